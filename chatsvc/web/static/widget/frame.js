/*! chatsvc widget, Apache-2.0, source: widget/frame.js */
(function (w, d) {
"use strict";
var PROTOCOL = 2;
var S = JSON.parse(d.getElementById("chatsvc-settings").textContent);
var T = S.strings;
var NS = "chatsvc." + S.site + ".";
var EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
var URLS = /\bhttps?:\/\/[^\s<>"']+/gi;
var LIVE = { waiting: 1, with_agent: 1 };
var MAX_EVENTS = 300;
var IDENTITY = { name: 200, email: 320, plan: 64, community: 200 };
var FATAL = { 1003: 1, 1008: 1, 1009: 1, 4003: 1 };
function $(id) { return d.getElementById(id); }
function has(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
function el(tag, cls, text) {
var e = d.createElement(tag);
if (cls) e.className = cls;
if (text !== undefined && text !== null) e.textContent = String(text);
return e;
}
function fill(text, values) {
return String(text).replace(/\{(\w+)\}/g, function (m, k) { return values[k] === undefined ? m : values[k]; });
}
var SMALL = { token: 1, read: 1, email: 1, rated: 1, outbox: 1 };
var memory = {};
var local = null;
try {
local = w.localStorage;
local.setItem(NS + "probe", "1");
local.removeItem(NS + "probe");
} catch (e) {
local = null;
}
function cookieName(k) { return "__Secure-" + NS + k; }
function readCookie(k) {
var name = cookieName(k) + "=";
var found = d.cookie.split("; ").filter(function (c) { return c.indexOf(name) === 0; })[0];
return found === undefined ? null : decodeURIComponent(found.slice(name.length));
}
function writeCookie(k, s) {
var value = s === null ? "" : encodeURIComponent(s);
if (value.length > 3500) return false;
d.cookie = cookieName(k) + "=" + value + "; Path=/widget/frame/; Secure; SameSite=None; Partitioned; Max-Age=" +
(s === null ? 0 : 31536000);
return readCookie(k) === s;
}
function getRaw(k) {
if (local) return local.getItem(NS + k);
if (has(memory, k)) return memory[k];
return SMALL[k] && w.isSecureContext ? readCookie(k) : null;
}
function setRaw(k, s) {
if (local) {
try {
if (s === null) local.removeItem(NS + k);
else local.setItem(NS + k, s);
return;
} catch (e) {
}
} else if (SMALL[k] && w.isSecureContext) {
if (writeCookie(k, s)) {
delete memory[k];
return;
}
writeCookie(k, null);
}
if (s === null) delete memory[k];
else memory[k] = s;
}
function load(k, dflt) {
var v = getRaw(k);
if (v === null) return dflt;
try { return JSON.parse(v); } catch (e) { return dflt; }
}
function save(k, v) {
setRaw(k, v === null || v === undefined ? null : JSON.stringify(v));
}
var saveTimer = 0;
function saveSoon() {
if (!saveTimer) saveTimer = setTimeout(saveNow, 60);
}
function saveNow() {
clearTimeout(saveTimer);
saveTimer = 0;
save("events", events.slice(-MAX_EVENTS));
save("conv", conv);
}
var bc = null;
try { bc = new BroadcastChannel(NS); } catch (e) { bc = null; }
function shout(m) {
if (bc) try { bc.postMessage(m); } catch (e) { /* a closed channel: other tabs catch up on reload */ }
}
var embedded = w.parent !== w;
var host = new URLSearchParams(location.hash.slice(1)).get("o");
if (location.ancestorOrigins && location.ancestorOrigins.length && location.ancestorOrigins[0] !== host) host = null;
function tell(type, data) {
if (embedded && host && host !== "null") w.parent.postMessage({ chatsvc: 1, type: type, data: data || null }, host);
}
var token, conv, events, lastSeq, readSeq, email, rated, delivSent;
var identity = null;
var identitySig = null;
var hostOpen = !embedded;
var started = false;
var anonymous = false;
function restore() {
token = load("token", null);
conv = load("conv", null);
events = load("events", []);
lastSeq = events.length ? events[events.length - 1].seq : 0;
readSeq = load("read", 0);
email = load("email", null);
rated = load("rated", 0);
delivSent = 0;
}
function outbox() { return load("outbox", []); }
function setOutbox(list) { save("outbox", list.length ? list : null); }
function state() { return conv ? conv.state : "bot"; }
function agentName() { return conv && conv.agent && conv.agent.name || T.agent; }
function newId(prefix) {
var a = new Uint8Array(9);
w.crypto.getRandomValues(a);
return prefix + Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
}
var ws = null;
var online = false;
var halted = false;
var attempts = 0;
var retryTimer = 0;
var pingTimer = 0;
var pongTimer = 0;
var helloToken = null;
var helloSeq = 0;
var serverRead = 0;
var refs = {};
var commands = [];
function raw(frame) {
if (!ws || ws.readyState !== 1) return false;
ws.send(JSON.stringify(frame));
return true;
}
function connect() {
if (ws || halted) return;
clearTimeout(retryTimer);
retryTimer = 0;
connection("connecting");
var sock = ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/visitor");
sock.onopen = function () {
if (ws !== sock) return;
helloToken = token;
helloSeq = lastSeq;
var hello = { type: "hello", v: PROTOCOL, site: S.site, token: token, last_seq: lastSeq };
if (anonymous) {
} else if (identity) {
hello.identity = identity;
if (identitySig) hello.identity_sig = identitySig;
} else if (email) {
hello.identity = { email: email };
}
raw(hello);
pingTimer = setInterval(ping, 25000);
};
sock.onmessage = function (e) {
if (ws !== sock) return;
clearTimeout(pongTimer);
pongTimer = 0;
var f = null;
try { f = JSON.parse(e.data); } catch (err) { return; }
if (f && typeof f.type === "string" && has(onFrame, f.type)) onFrame[f.type](f);
};
sock.onclose = function (e) {
if (ws === sock) dropped(e.code);
};
}
function ping() {
if (raw({ type: "ping" }) && !pongTimer) {
pongTimer = setTimeout(function () {
var sock = ws;
dropped(4000);
try { sock.close(); } catch (e) { /* already gone */ }
}, 10000);
}
}
function connection(name) {
d.body.setAttribute("data-connection", name);
}
function disconnect() {
var sock = ws;
ws = null;
online = false;
clearInterval(pingTimer);
clearTimeout(pongTimer);
pongTimer = 0;
if (sock) try { sock.close(1000); } catch (e) { /* already closed */ }
}
function dropped(code) {
disconnect();
connection(FATAL[code] ? "unavailable" : "offline");
if (FATAL[code]) {
halted = true;
banner(T.unavailable);
return;
}
if (code === 4001) {
anonymous = true;
}
if (code === 1000) return;
banner(T.reconnecting);
var flood = code === 4029;
var delay = Math.min(flood ? 30000 : 5000, (flood ? 5000 : 500) * Math.pow(2, attempts++));
retryTimer = setTimeout(connect, delay / 2 + Math.random() * delay / 2);
}
function reconnectNow() {
disconnect();
attempts = 0;
connect();
}
function ensureConnected() {
if (!ws && !retryTimer && !halted && !needsPrechat()) connect();
}
w.addEventListener("online", function () {
if (!ws && retryTimer) connect();
});
function command(frame, done) {
frame.ref = newId("r-");
refs[frame.ref] = done || function () {};
if (online) raw(frame);
else { commands.push(frame); ensureConnected(); }
}
var onFrame = {
welcome: function (f) {
var c = f.conversation;
if (!helloToken) {
var first = load("token", null);
if (first && first !== f.token) { token = first; clearTranscript(); reconnectNow(); return; }
}
token = f.token;
save("token", token);
if (f.limits && f.limits.max_message_chars) input.maxLength = f.limits.max_message_chars;
if (conv && conv.id !== c.id) {
clearTranscript();
if (helloSeq > 0) { reconnectNow(); return; }
}
conv = { id: c.id, state: c.state, agent: c.agent, agentRead: c.agent_read_seq || 0,
delivered: conv && conv.delivered || 0, email: c.visitor && c.visitor.email || null };
serverRead = c.visitor_read_seq || 0;
readSeq = Math.max(readSeq, serverRead);
saveSoon();
showState();
},
event: function (f) {
if (f.seq > lastSeq) addEvent(f);
},
replayed: function () {
online = true;
connection("online");
attempts = 0;
banner(null);
flushOutbox();
var list = commands;
commands = [];
list.forEach(raw);
receipts();
showState();
},
ack: function (f) {
settle(f.client_id);
},
done: function (f) {
var cb = f.ref && refs[f.ref];
if (cb) { delete refs[f.ref]; cb(null); }
},
error: function (f) {
if (f.code === "resync_required") {
clearTranscript();
return;
}
var item = f.ref && findOut(f.ref);
if (item) {
if (f.retryable || f.code === "rate_limited") setTimeout(flushOutbox, 1500);
else fail(item, f.code === "too_long" ? T.too_long : f.message);
return;
}
var cb = f.ref && refs[f.ref];
if (cb) { delete refs[f.ref]; cb(f); }
},
typing: function (f) {
if (f.role === "agent") showTyping(f.active, f.name);
},
receipt: function (f) {
if (f.role !== "agent" || !conv) return;
if (f.status === "read") conv.agentRead = Math.max(conv.agentRead || 0, f.seq);
else conv.delivered = Math.max(conv.delivered || 0, f.seq);
saveSoon();
showReceipt();
},
pong: function () {}
};
function send(text) {
var item = { client_id: newId("m-"), text: text, at: new Date().toISOString() };
setOutbox(outbox().concat([item]));
shout({ t: "outbox" });
renderPending(item);
if (online) sendItem(item);
else ensureConnected();
}
function sendItem(item) {
raw({ type: "message", client_id: item.client_id, text: item.text, ref: item.client_id });
}
function flushOutbox() {
if (online) outbox().forEach(sendItem);
}
function findOut(clientId) {
return outbox().filter(function (i) { return i.client_id === clientId; })[0] || null;
}
function settle(clientId) {
setOutbox(outbox().filter(function (i) { return i.client_id !== clientId; }));
}
function fail(item, reason) {
settle(item.client_id);
var li = pendingEls[item.client_id];
if (li) {
li.classList.add("failed");
li.querySelector(".meta").textContent = fill(T.not_sent, { reason: reason });
delete pendingEls[item.client_id];
}
}
var log = $("log");
var input = $("input");
var actions = $("actions");
var composer = $("composer");
var pendingEls = {};
var askEls = {};
var opened = {};
var lastWho = null;
function nearEnd() { return log.scrollHeight - log.scrollTop - log.clientHeight < 60; }
var atEnd = true;
log.addEventListener("scroll", function () { atEnd = nearEnd(); });
if (w.ResizeObserver) new w.ResizeObserver(function () { if (atEnd) log.scrollTop = log.scrollHeight; }).observe(log);
function place(node, force) {
var stick = force || atEnd;
var firstPending = log.querySelector(".pending");
if (node.classList.contains("pending") || !firstPending) log.appendChild(node);
else log.insertBefore(node, firstPending);
if (stick) {
log.scrollTop = log.scrollHeight;
atEnd = true;
}
}
function safeURL(u) {
try {
var p = new URL(u);
return p.protocol === "https:" || p.protocol === "http:" ? p.href : null;
} catch (e) {
return null;
}
}
function link(href, text) {
var a = el("a", null, text);
a.href = href;
a.target = "_blank";
a.rel = "noopener noreferrer";
return a;
}
function richText(node, text) {
var at = 0;
var m;
URLS.lastIndex = 0;
while ((m = URLS.exec(text))) {
var url = m[0].replace(/[.,;:!?)\]}'"]+$/, "");
var href = safeURL(url);
node.appendChild(d.createTextNode(text.slice(at, m.index)));
node.appendChild(href ? link(href, url) : d.createTextNode(url));
at = m.index + url.length;
URLS.lastIndex = at;
}
node.appendChild(d.createTextNode(text.slice(at)));
}
function clip(text, n) {
text = String(text || "").replace(/\s+/g, " ").trim();
if (text.length <= n) return text;
var cut = text.slice(0, n);
var space = cut.lastIndexOf(" ");
return (space > n * 0.6 ? cut.slice(0, space) : cut) + "…";
}
var clock = null;
try { clock = new Intl.DateTimeFormat(S.locale, { hour: "numeric", minute: "2-digit" }); } catch (e) { clock = null; }
function timeOf(iso) {
var t = iso ? new Date(iso) : null;
return t && clock && !isNaN(t) ? clock.format(t) : "";
}
function who(ev) {
if (ev.role === "bot") return ev.author && ev.author.name || T.bot;
return ev.author && ev.author.name || agentName();
}
function bubble(cls, name, text, at) {
var li = el("li", "msg " + cls);
if (name && name !== lastWho) li.appendChild(el("span", "who", name));
lastWho = name;
var b = el("div", "bubble");
b.dir = "auto";
richText(b, text || "");
li.appendChild(b);
li.appendChild(el("span", "meta", timeOf(at)));
return li;
}
function note(text, cls) {
lastWho = null;
return el("li", "note" + (cls ? " " + cls : ""), text);
}
var STATE_NOTES = {
waiting: function () { return note(T.waiting, "wait"); },
ticket_pending: function () { return note(T.ticket_pending); },
ended: function () { return note(T.ended); }
};
var render = {
message: function (ev) {
if (ev.role === "visitor") {
var li = bubble("me", null, ev.text, ev.at);
li.setAttribute("data-seq", ev.seq);
return li;
}
if (ev.role === "system") return note(ev.text);
return bubble(ev.role === "bot" ? "bot" : "agent", who(ev), ev.text, ev.at);
},
suggestions: function (ev) {
var li = bubble("bot wide", who(ev), ev.text, ev.at);
var b = li.querySelector(".bubble");
var articles = ev.data && ev.data.articles || [];
var list = el("ul", "articles");
articles.forEach(function (a) {
var item = el("li", "article");
var href = safeURL(a.url);
var title = href ? link(href, a.title) : el("span", null, a.title);
title.className = "title";
title.addEventListener("click", function () { opened[ev.seq] = a.id; });
item.appendChild(title);
item.appendChild(el("p", "snippet", clip(a.passage, 130)));
list.appendChild(item);
});
b.appendChild(list);
if (articles.length) {
var ask = el("div", "ask");
ask.setAttribute("role", "group");
ask.setAttribute("aria-label", T.did_it_help);
ask.appendChild(el("span", null, T.did_it_help));
var choices = ask.appendChild(el("span", "choices"));
[[true, T.yes], [false, T.no]].forEach(function (pair) {
var btn = el("button", "chip", pair[1]);
btn.type = "button";
btn.addEventListener("click", function () { answer(ev, pair[0], ask); });
choices.appendChild(btn);
});
b.appendChild(ask);
askEls[ev.seq] = ask;
}
return li;
},
feedback: function (ev) {
thank(askEls[ev.data && ev.data.suggestion_seq], ev.data && ev.data.helpful);
return null;
},
state: function (ev) {
var to = ev.data && ev.data.to;
return has(STATE_NOTES, to) ? STATE_NOTES[to](ev) : null;
},
agent_joined: function (ev) { return note(fill(T.agent_joined, { name: who(ev) })); },
agent_left: function (ev) {
var lost = ev.data && ev.data.reason === "disconnected";
return note(fill(lost ? T.agent_lost : T.agent_left, { name: who(ev) }));
},
ticket: function (ev) {
var number = ev.data && ev.data.number;
return note(ev.text || T.ticketed + (number ? " " + fill(T.ticket_number, { number: number }) : ""), "ticket");
},
transferred: function (ev) {
return note(fill(T.transferred, { name: ev.data && ev.data.to && ev.data.to.name || T.agent }));
}
};
function answer(ev, helpful, ask) {
var buttons = Array.prototype.slice.call(ask.querySelectorAll("button"));
buttons.forEach(function (b) { b.disabled = true; });
var frame = { type: "feedback", seq: ev.seq, article_id: opened[ev.seq] || ev.data.articles[0].id, helpful: helpful };
command(frame, function (err) {
if (err) buttons.forEach(function (b) { b.disabled = false; });
else thank(ask, helpful);
});
}
function thank(ask, helpful) {
if (!ask || ask.querySelector(".thanks")) return;
while (ask.firstChild) ask.removeChild(ask.firstChild);
ask.appendChild(el("span", "thanks", helpful ? T.helpful_thanks : T.unhelpful_thanks));
}
function apply(ev) {
if (!conv) return;
if (ev.kind === "state" && ev.data) conv.state = ev.data.to;
else if (ev.kind === "agent_joined") conv.agent = ev.author;
else if (ev.kind === "agent_left") conv.agent = null;
else if (ev.kind === "transferred" && ev.data) conv.agent = ev.data.to;
}
function draw(ev) {
var node = has(render, ev.kind) ? render[ev.kind](ev) : null;
if (node) place(node, ev.role === "visitor");
}
function addEvent(f) {
var ev = { seq: f.seq, kind: f.kind, role: f.role, author: f.author, text: f.text, client_id: f.client_id,
data: f.data, at: f.at };
lastSeq = ev.seq;
events.push(ev);
if (events.length > MAX_EVENTS * 2) events = events.slice(-MAX_EVENTS);
if (ev.client_id && pendingEls[ev.client_id]) {
log.removeChild(pendingEls[ev.client_id]);
delete pendingEls[ev.client_id];
}
if (ev.client_id && ev.role === "visitor") settle(ev.client_id);
draw(ev);
apply(ev);
saveSoon();
if (ev.role === "agent" && ev.kind === "message") showTyping(false);
showState();
receipts();
}
function renderPending(item) {
if (pendingEls[item.client_id]) return;
var li = bubble("me pending", null, item.text, item.at);
li.querySelector(".meta").textContent = T.sending;
pendingEls[item.client_id] = li;
place(li, true);
showReceipt();
}
function clearTranscript() {
events = [];
lastSeq = 0;
conv = null;
askEls = {};
lastWho = null;
while (log.firstChild) log.removeChild(log.firstChild);
pendingEls = {};
intro();
outbox().forEach(renderPending);
saveNow();
}
function openNow(h) {
if (!h) return true;
var parts = {};
try {
new Intl.DateTimeFormat("en-US", { timeZone: h.timezone, weekday: "short", hour: "2-digit", minute: "2-digit",
hourCycle: "h23" }).formatToParts(new Date()).forEach(function (p) {
parts[p.type] = p.value;
});
} catch (e) {
return true;
}
var now = parts.hour + ":" + parts.minute;
return h.days.indexOf(String(parts.weekday).slice(0, 3).toLowerCase()) >= 0 && now >= h.open && now < h.close;
}
function intro() {
if (S.greeting) place(bubble("bot intro", S.title, S.greeting, null));
var away = note(T.away, "away");
away.hidden = openNow(S.hours);
place(away);
lastWho = null;
}
function lastAgentSeq() {
for (var i = events.length - 1; i >= 0; i--) {
if (events[i].role === "agent" && events[i].kind === "message") return events[i].seq;
}
return 0;
}
function visible() { return hostOpen && d.visibilityState === "visible"; }
var toldUnread = -1;
function receipts() {
var top = lastAgentSeq();
if (online && top > delivSent) {
delivSent = top;
raw({ type: "receipt", seq: top, status: "delivered" });
}
if (visible() && top > readSeq) {
readSeq = top;
save("read", readSeq);
shout({ t: "read", seq: readSeq });
}
if (online && readSeq > serverRead) {
serverRead = readSeq;
raw({ type: "receipt", seq: readSeq, status: "read" });
}
var count = events.filter(function (e) { return e.role === "agent" && e.kind === "message" && e.seq > readSeq; }).length;
if (count !== toldUnread) {
toldUnread = count;
tell("unread", { count: count });
}
}
var statusEl = el("span", "receipt");
function showReceipt() {
var mine = log.querySelectorAll(".msg.me");
var last = mine[mine.length - 1];
if (statusEl.parentNode) statusEl.parentNode.removeChild(statusEl);
if (!last || last.classList.contains("pending")) return;
var seq = +last.getAttribute("data-seq");
var text = T.sent;
if (conv && conv.agentRead >= seq) text = T.read;
else if (conv && conv.delivered >= seq) text = T.delivered;
var meta = last.querySelector(".meta");
statusEl.textContent = (meta.textContent ? " · " : "") + text;
meta.appendChild(statusEl);
}
var typingEl = $("typing");
var typingHide = 0;
function showTyping(on, name) {
clearTimeout(typingHide);
typingEl.hidden = !on;
if (on) {
typingEl.textContent = fill(T.typing, { name: name || agentName() });
typingHide = setTimeout(function () { showTyping(false); }, 8000);
}
}
var typingOn = false;
var typingSent = 0;
var typingIdle = 0;
function typed() {
if (!online || state() !== "with_agent") return;
var now = Date.now();
if (!typingOn || now - typingSent > 3000) {
if (raw({ type: "typing", active: true })) { typingOn = true; typingSent = now; }
}
clearTimeout(typingIdle);
typingIdle = setTimeout(stopTyping, 4000);
}
function stopTyping() {
clearTimeout(typingIdle);
if (typingOn) {
typingOn = false;
raw({ type: "typing", active: false });
}
}
var bannerEl = $("banner");
function banner(text) {
bannerEl.hidden = !text;
bannerEl.textContent = text || "";
}
var STATUS = {
bot: function () { return T.status_bot; },
waiting: function () { return T.status_waiting; },
with_agent: function () { return fill(T.status_agent, { name: agentName() }); },
ticket_pending: function () { return T.status_email; },
ticketed: function () { return T.status_email; },
ended: function () { return T.status_ended; }
};
function knownEmail() {
return email || conv && conv.email || "";
}
function needsPrechat() {
return S.require_email && !token && !email && !(identity && identity.email) && !events.length;
}
var mode = null;
var toldState = null;
function showState() {
var s = state();
$("chat-status").textContent = has(STATUS, s) ? STATUS[s]() : "";
$("end").hidden = !(s === "waiting" || s === "with_agent");
if (s !== "with_agent") showTyping(false);
var next = needsPrechat() ? "prechat" : s + ":" + knownEmail() + (s === "ended" && S.csat && rated < lastSeq ? ":csat" : "");
if (next !== mode) {
mode = next;
actionsFor(s);
}
showReceipt();
if (toldState !== s && started) {
toldState = s;
tell("state", { state: s, live: !!LIVE[s] });
}
}
function button(text, cls, onClick) {
var b = el("button", cls || "btn", text);
b.type = "button";
b.addEventListener("click", onClick);
return b;
}
function talkButton() {
return button(T.talk_to_person, "btn", function () {
var b = this;
b.disabled = true;
var frame = { type: "request_agent" };
if (knownEmail()) frame.email = knownEmail();
command(frame, function () { b.disabled = false; });
});
}
var uid = 0;
function emailForm(prompt, submitText, onEmail) {
var f = el("form", "card email");
f.noValidate = true;
var id = "email-" + (++uid);
f.appendChild(el("p", "prompt", prompt));
var lab = el("label", "vh", T.email_label);
lab.htmlFor = id;
var inp = el("input");
inp.type = "email";
inp.id = id;
inp.autocomplete = "email";
inp.placeholder = T.email_label;
inp.value = email || identity && identity.email || "";
var err = el("p", "error");
err.id = id + "-error";
err.hidden = true;
inp.setAttribute("aria-describedby", err.id);
var row = el("div", "row");
row.appendChild(inp);
var btn = el("button", "btn", submitText);
btn.type = "submit";
row.appendChild(btn);
f.appendChild(lab);
f.appendChild(row);
f.appendChild(err);
f.addEventListener("submit", function (e) {
e.preventDefault();
var v = inp.value.trim();
if (!EMAIL.test(v) || v.length > 320) {
err.textContent = T.email_invalid;
err.hidden = false;
inp.setAttribute("aria-invalid", "true");
inp.focus();
return;
}
btn.disabled = true;
onEmail(v, function () { btn.disabled = false; });
});
return f;
}
function rememberEmail(v) {
email = v;
save("email", v);
shout({ t: "email", email: v });
}
function leaveEmail(v, again) {
command({ type: "leave_email", email: v }, function (err) {
if (err) { again(); return; }
rememberEmail(v);
showState();
});
}
function csatCard() {
var f = el("form", "card csat");
var fs = el("fieldset");
fs.appendChild(el("legend", null, T.csat_question));
var rates = el("div", "rates");
var picked = null;
["good", "okay", "bad"].forEach(function (r) {
var b = button(T["csat_" + r], "chip", function () {
picked = r;
Array.prototype.forEach.call(rates.children, function (c) { c.setAttribute("aria-pressed", String(c === b)); });
submit.disabled = false;
});
b.setAttribute("aria-pressed", "false");
rates.appendChild(b);
});
fs.appendChild(rates);
var id = "csat-" + (++uid);
var lab = el("label", "sub", T.csat_comment);
lab.htmlFor = id;
var comment = el("textarea");
comment.id = id;
comment.rows = 2;
comment.maxLength = 2000;
fs.appendChild(lab);
fs.appendChild(comment);
f.appendChild(fs);
var submit = el("button", "btn", T.csat_send);
submit.type = "submit";
submit.disabled = true;
f.appendChild(submit);
f.addEventListener("submit", function (e) {
e.preventDefault();
if (!picked) return;
var frame = { type: "csat", rating: picked };
if (comment.value.trim()) frame.comment = comment.value.trim();
submit.disabled = true;
var endSeq = lastSeq;
command(frame, function (err) {
if (err) { submit.disabled = false; return; }
rated = endSeq;
save("rated", rated);
shout({ t: "rated", seq: rated });
tell("csat", { rating: picked });
while (f.firstChild) f.removeChild(f.firstChild);
f.appendChild(el("p", "prompt", T.csat_thanks));
});
});
return f;
}
function actionsFor(s) {
while (actions.firstChild) actions.removeChild(actions.firstChild);
composer.hidden = mode === "prechat";
if (mode === "prechat") {
actions.appendChild(emailForm(T.prechat, T.prechat_submit, function (v) {
rememberEmail(v);
showState();
connect();
input.focus();
}));
return;
}
if (s === "bot" || s === "ended") {
if (s === "ended" && S.csat && rated < lastSeq) actions.appendChild(csatCard());
actions.appendChild(talkButton());
} else if (s === "waiting") {
var wait = el("div", "card wait");
wait.appendChild(el("p", "prompt", T.waiting));
var more = button(T.leave_email_instead, "linkish", function () {
wait.replaceChild(emailForm(T.email_prompt, T.email_submit, leaveEmail), more);
wait.querySelector("input").focus();
});
wait.appendChild(more);
actions.appendChild(wait);
} else if (s === "ticket_pending" || s === "ticketed") {
if (knownEmail()) actions.appendChild(el("p", "card prompt", fill(T.email_saved, { email: knownEmail() })));
else actions.appendChild(emailForm(T.ticket_pending, T.email_submit, leaveEmail));
}
}
function grow() {
input.style.height = "auto";
input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
}
composer.addEventListener("submit", function (e) {
e.preventDefault();
var text = input.value;
if (!text.trim()) return;
input.value = "";
grow();
stopTyping();
send(text);
});
input.addEventListener("keydown", function (e) {
if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
e.preventDefault();
composer.requestSubmit();
}
});
input.addEventListener("input", function () { grow(); typed(); });
$("close").hidden = !embedded;
$("close").addEventListener("click", function () { tell("close"); });
$("end").addEventListener("click", function () { command({ type: "end" }); });
d.addEventListener("keydown", function (e) {
if (e.key === "Escape" && embedded) { e.preventDefault(); fromHost.close(); tell("close"); }
});
d.addEventListener("visibilitychange", receipts);
w.addEventListener("pagehide", saveNow);
function focusFirst() {
var target = mode === "prechat" ? actions.querySelector("input") : input;
if (target) target.focus();
}
function setIdentity(m) {
var who = null;
if (m && m.identity) {
who = {};
Object.keys(IDENTITY).forEach(function (k) {
var v = m.identity[k];
if (typeof v === "string" && v && v.length <= IDENTITY[k]) who[k] = v;
});
if (who.email && !EMAIL.test(who.email)) delete who.email;
}
var before = JSON.stringify([identity, identitySig]);
identity = who && Object.keys(who).length ? who : null;
identitySig = identity && m && typeof m.sig === "string" ? m.sig.slice(0, 128) : null;
anonymous = false;
return before !== JSON.stringify([identity, identitySig]);
}
function resetLocal() {
disconnect();
connection("offline");
clearTimeout(retryTimer);
retryTimer = 0;
halted = false;
["token", "conv", "events", "outbox", "read", "email", "rated"].forEach(function (k) { save(k, null); });
restore();
clearTranscript();
mode = null;
showState();
}
function start() {
started = true;
showState();
ensureConnected();
}
var fromHost = {
init: function (m) {
if (m.reset) resetLocal();
setIdentity(m.identity);
hostOpen = !!m.open;
start();
if (hostOpen) focusFirst();
},
open: function () {
hostOpen = true;
d.querySelector(".away").hidden = openNow(S.hours);
ensureConnected();
focusFirst();
receipts();
},
close: function () {
hostOpen = false;
stopTyping();
},
identify: function (m) {
if (setIdentity(m) && ws) reconnectNow();
},
reset: function () {
resetLocal();
shout({ t: "reset" });
if (hostOpen) ensureConnected();
}
};
w.addEventListener("message", function (e) {
if (!embedded || e.source !== w.parent || e.origin !== host) return;
var m = e.data;
if (!m || m.chatsvc !== 1 || !has(fromHost, m.type)) return;
fromHost[m.type](m.data || {});
});
var fromTabs = {
outbox: function () {
outbox().forEach(function (item) {
var known = events.some(function (ev) { return ev.client_id === item.client_id; });
if (!known) renderPending(item);
});
},
read: function (m) {
if (m.seq > readSeq) { readSeq = m.seq; receipts(); }
},
email: function (m) {
email = m.email;
showState();
},
rated: function (m) {
rated = m.seq;
showState();
},
reset: function () {
resetLocal();
if (hostOpen) ensureConnected();
}
};
if (bc) {
bc.onmessage = function (e) {
var m = e.data;
if (m && has(fromTabs, m.t)) fromTabs[m.t](m);
};
}
restore();
intro();
events.forEach(function (ev) { draw(ev); apply(ev); });
outbox().forEach(renderPending);
showState();
if (embedded) tell("ready");
else start();
})(window, document);
