/*
 * chatsvc widget loader: the one script a site embeds.
 *
 *   <script src="https://HOST/widget.js" data-site="SITE_KEY" async></script>
 *
 * It draws the launcher in a shadow root (the page's CSS cannot restyle it) and puts the chat in an
 * iframe on the chatsvc origin, so the page's scripts cannot read the conversation and the visitor's
 * token stays in the frame's own storage. Until the visitor opens the chat (or already has a live
 * conversation, which a flag in this page's localStorage remembers) the only request is the site's
 * settings: no iframe, no websocket.
 *
 * One global, window.ChatSvc: open, close, toggle, identify, on, reset. Calls made through the queue
 * stub before this file loads are replayed in order; loading this file twice changes nothing.
 */
(function (w, d) {
"use strict";
var stub = w.ChatSvc;
if (stub && stub.version) return;

var me = d.currentScript || d.querySelector("script[data-site][src*='widget.js']");
if (!me || !me.src) return;
var ORIGIN = new URL(me.src, location.href).origin;
var SITE = me.getAttribute("data-site") || "default";
var KEY = "chatsvc." + SITE + ".";

var S = null;
var handlers = {};
var wrap, launcher, badge, panel, frame, shout;
var frameReady = false;
var isOpen = false;
var wantOpen = false;
var unread = 0;
var identity = null;

function flag(name, on) {
  try {
    var ls = w.localStorage;
    if (on === undefined) return ls.getItem(KEY + name) === "1";
    if (on) ls.setItem(KEY + name, "1");
    else ls.removeItem(KEY + name);
  } catch (e) {
    // Storage blocked: the widget then connects only when the visitor opens it.
  }
  return false;
}

function emit(name, data) {
  (handlers[name] || []).forEach(function (fn) {
    try { fn(data); } catch (e) { setTimeout(function () { throw e; }); }
  });
}

function post(type, data) {
  if (frameReady) frame.contentWindow.postMessage({ chatsvc: 1, type: type, data: data || null }, ORIGIN);
}

function el(tag, cls) {
  var e = d.createElement(tag);
  e.className = cls;
  return e;
}

function fill(text, n) {
  return text.replace("{count}", n);
}

var CSS = ":host{all:initial!important;display:contents!important}" +
  ".l{all:unset;box-sizing:border-box;position:fixed;bottom:20px;right:20px;z-index:2147483000;display:flex;align-items:center;gap:8px;height:52px;padding:0 20px 0 16px;border-radius:26px;background:var(--b);color:var(--o);font:600 15px system-ui,sans-serif;box-shadow:0 4px 18px #0004;cursor:pointer}" +
  ".l:focus-visible{outline:3px solid var(--b);outline-offset:3px}" +
  ".l svg{width:24px;height:24px}" +
  ".n{min-width:20px;height:20px;padding:0 6px;box-sizing:border-box;border-radius:10px;background:#b42318;color:#fff;font-size:12px;line-height:20px;text-align:center}" +
  ".p{position:fixed;bottom:84px;right:20px;z-index:2147483000;width:380px;height:640px;max-height:calc(100vh - 104px);border-radius:16px;overflow:hidden;background:#fff;box-shadow:0 12px 48px #0005;visibility:hidden;opacity:0;transition:opacity .2s}" +
  ".left .l,.left .p{right:auto;left:20px}" +
  ".open .p{visibility:visible;opacity:1}" +
  "iframe{display:block;width:100%;height:100%;border:0}" +
  ".vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}" +
  "@media (max-width:480px){.p,.left .p{inset:0;width:100%;height:100%;max-height:none;border-radius:0}.open .l{display:none}}" +
  "@media (prefers-reduced-motion:reduce){.p{transition:none}}";

function describe() {
  // The badge is hidden from screen readers; the launcher's name says how many messages are new.
  if (unread && !isOpen) launcher.setAttribute("aria-label", S.launcher_label + ", " + fill(S.strings.new_messages, unread));
  else launcher.removeAttribute("aria-label");
}

function draw(settings) {
  S = settings;
  var host = d.createElement("chatsvc-widget");
  var root = host.attachShadow({ mode: "open" });
  try {
    // A constructed stylesheet works under a host page's strict style-src; <style> is the fallback.
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    root.appendChild(el("style", "")).textContent = CSS;
  }
  wrap = el("div", S.position);
  wrap.dir = S.dir;
  wrap.lang = S.locale;
  wrap.style.setProperty("--b", S.color);
  wrap.style.setProperty("--o", S.on_color);
  launcher = el("button", "l");
  launcher.type = "button";
  launcher.setAttribute("aria-haspopup", "dialog");
  launcher.setAttribute("aria-expanded", "false");
  var ns = "http://www.w3.org/2000/svg";
  var icon = launcher.appendChild(d.createElementNS(ns, "svg"));
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  var path = icon.appendChild(d.createElementNS(ns, "path"));
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  launcher.appendChild(d.createTextNode(S.launcher_label));
  badge = launcher.appendChild(el("span", "n"));
  badge.hidden = true;
  badge.setAttribute("aria-hidden", "true");
  launcher.addEventListener("click", toggle);
  panel = wrap.appendChild(el("div", "p"));
  wrap.appendChild(launcher);
  shout = wrap.appendChild(el("div", "vh"));
  shout.setAttribute("aria-live", "polite");
  root.appendChild(wrap);
  d.body.appendChild(host);
  if (flag("live")) ensureFrame();
  emit("ready", { site: SITE });
  if (wantOpen) open();
}

function ensureFrame() {
  if (frame) return;
  frame = d.createElement("iframe");
  frame.title = S.title;
  // The frame may run scripts, keep its own storage and open article links in new tabs; it can never
  // navigate this page.
  frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox");
  frame.src = ORIGIN + "/widget/frame/" + encodeURIComponent(SITE) + "#o=" + encodeURIComponent(location.origin);
  panel.appendChild(frame);
}

// Messages from the chat frame: only from our frame's window and the chatsvc origin, one handler per type.
var fromFrame = {
  ready: function () {
    frameReady = true;
    post("init", { open: isOpen, identity: identity, reset: flag("reset") });
    flag("reset", false);
  },
  close: function () { close(true); },
  unread: function (m) {
    var n = m.count | 0;
    if (n > unread && !isOpen) shout.textContent = fill(S.strings.new_messages, n);
    unread = n;
    badge.textContent = n > 99 ? "99+" : n;
    badge.hidden = !n;
    describe();
    emit("unread", { count: n });
  },
  state: function (m) {
    flag("live", !!m.live);
    emit("state", { state: String(m.state) });
  },
  csat: function (m) { emit("csat", { rating: String(m.rating) }); }
};

w.addEventListener("message", function (e) {
  var m = e.data;
  if (!frame || e.source !== frame.contentWindow || e.origin !== ORIGIN) return;
  if (m && m.chatsvc === 1 && Object.prototype.hasOwnProperty.call(fromFrame, m.type)) fromFrame[m.type](m.data || {});
});

function open() {
  if (!S) { wantOpen = true; return; }
  if (isOpen) return;
  isOpen = true;
  ensureFrame();
  wrap.classList.add("open");
  launcher.setAttribute("aria-expanded", "true");
  describe();
  post("open");
  frame.focus();
  emit("open");
}

function close(fromChat) {
  if (!S) { wantOpen = false; return; }
  if (!isOpen) return;
  isOpen = false;
  var inside = fromChat === true || d.activeElement === wrap.getRootNode().host;
  wrap.classList.remove("open");
  launcher.setAttribute("aria-expanded", "false");
  describe();
  post("close");
  if (inside) launcher.focus();
  emit("close");
}

function toggle() {
  if (isOpen || !S && wantOpen) close(); else open();
}

// The frame checks the fields; this page only passes them on, with the signature its backend made.
function identify(user, signature) {
  identity = user ? { identity: JSON.parse(JSON.stringify(user)), sig: signature || null } : null;
  post("identify", identity);
}

function on(name, fn) {
  if (typeof fn === "function") (handlers[name] = handlers[name] || []).push(fn);
}

function reset() {
  identity = null;
  flag("live", false);
  if (frameReady) post("reset");
  else flag("reset", true);
}

var api = { version: "1", open: open, close: close, toggle: toggle, identify: identify, on: on, reset: reset };
w.ChatSvc = api;
(stub && stub.q || []).forEach(function (call) {
  if (api[call[0]]) api[call[0]].apply(null, call[1] || []);
});

fetch(ORIGIN + "/widget/settings/" + encodeURIComponent(SITE), { credentials: "omit" })
  .then(function (r) {
    if (!r.ok) throw new Error("chatsvc: no site " + SITE + " (HTTP " + r.status + ")");
    return r.json();
  })
  .then(function (settings) {
    if (d.body) draw(settings);
    else d.addEventListener("DOMContentLoaded", function () { draw(settings); });
  })
  .catch(function (e) {
    if (w.console) w.console.warn(e.message);
  });
})(window, document);
