/* The console's live chat workspace: the agent websocket (docs/protocol.md), offers, conversations.
 *
 * Never lose a message: every conversation keeps the highest `seq` it has shown (its cursor). After any
 * drop (network, sleep, server restart) the page reconnects with backoff and jitter and sends `hello`
 * with every cursor; the server replays exactly what is missing, and anything at or below a cursor is
 * ignored, so nothing is missed or shown twice. Sends carry a client_id and are retried with the same id
 * until acknowledged, so a reply is stored once however many times the connection drops.
 */
(function () {
  "use strict";

  var boot = JSON.parse(document.getElementById("console-boot").textContent);
  var $ = function (id) { return document.getElementById(id); };

  var PING_EVERY = 20000;
  var PONG_WITHIN = 10000;
  var QUEUE_REFRESH = 5000;
  var TYPING_IDLE = 4000;

  var state = {
    ws: null,
    connected: false,
    agent: boot.agent,
    presence: null,
    convs: new Map(),     // id -> conversation (see conversation())
    order: [],            // conversation ids, newest first
    offers: new Map(),    // conversation_id -> offer info (offered to me)
    waiting: [],          // every waiting conversation (GET /console/api/queue)
    problems: new Map(),  // conversation_id -> message shown on its card (lost race, ...)
    highlighted: null,    // conversation_id of the highlighted card
    selected: null,       // id of the open conversation
    pending: new Map(),   // client_id -> {conversation_id, type, text}
    refs: new Map(),      // ref -> handler of the answer
    refSeq: 0,
    backoff: 500,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    noteMode: false,
    typingSent: 0,
    typingTimer: null,
    macros: null,
    suggestFor: null,     // "conv:seq" the shown suggestions answer
    confirmTimer: null
  };

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; }
      else if (key === "className") { node.className = attrs[key]; }
      else if (attrs[key] !== null && attrs[key] !== undefined && attrs[key] !== false) { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) { return null; }
  }

  /* Text with its http(s) links made clickable; everything else stays text (no HTML is ever parsed). */
  function linkified(text) {
    var frag = document.createDocumentFragment();
    var pattern = /https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
    var last = 0, match;
    while ((match = pattern.exec(text)) !== null) {
      frag.appendChild(document.createTextNode(text.slice(last, match.index)));
      var href = safeUrl(match[0]);
      frag.appendChild(href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: match[0] })
                            : document.createTextNode(match[0]));
      last = match.index + match[0].length;
    }
    frag.appendChild(document.createTextNode(text.slice(last)));
    return frag;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function ago(iso) {
    if (!iso) { return ""; }
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 60) { return seconds + " s"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s"; }
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function left(iso) {
    var seconds = Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
    return "offer ends in " + seconds + " s";
  }

  function visitorName(visitor) {
    if (!visitor) { return "Visitor"; }
    return visitor.name || visitor.email || "Visitor";
  }

  var toastTimer = null;
  function toast(message, isError) {
    var box = $("toast");
    box.textContent = message;
    box.className = "toast" + (isError ? " error" : "");
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function getJson(path) {
    return fetch(path, { credentials: "same-origin", headers: { "Accept": "application/json", "X-CSRF-Token": csrf() } })
      .then(function (response) {
        if (response.status === 401) { toLogin(); throw new Error("logged out"); }
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error((body.error && body.error.message) || response.statusText); }
          return body;
        });
      });
  }

  function toLogin() {
    location.href = "/console/login?next=" + encodeURIComponent(location.pathname);
  }

  // ------------------------------------------------------------------ the socket

  function send(frame) {
    if (state.ws && state.connected) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function command(frame, onAnswer) {
    frame.ref = "r" + (++state.refSeq);
    if (onAnswer) { state.refs.set(frame.ref, onAnswer); }
    if (!send(frame)) {
      state.refs.delete(frame.ref);
      toast("Not connected: try again in a moment.", true);
      return false;
    }
    return true;
  }

  function setConnection(which, label) {
    var node = $("connection");
    node.dataset.state = which;
    node.textContent = label;
    document.body.dataset.connection = which;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.ws && state.ws.readyState <= 1) { return; }
    setConnection("connecting", "Connecting…");
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/agent");
    state.ws = ws;
    ws.onopen = function () {
      var cursors = {};
      state.convs.forEach(function (conv) {
        if (conv.follow) { cursors[conv.id] = conv.lastSeq; }
      });
      ws.send(JSON.stringify({ type: "hello", v: 3, cursors: cursors }));
    };
    ws.onmessage = function (message) {
      if (ws !== state.ws) { return; }
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      handle(frame);
    };
    ws.onclose = function (event) {
      if (ws !== state.ws) { return; }
      state.connected = false;
      clearInterval(state.pingTimer);
      clearTimeout(state.pongTimer);
      if (event.code === 4001) {
        setConnection("offline", "Logged out");
        toLogin();
        return;
      }
      setConnection("offline", "Reconnecting…");
      updateComposer();
      var delay = Math.min(state.backoff, 15000) * (0.5 + Math.random());
      state.backoff = Math.min(state.backoff * 2, 15000);
      state.reconnectTimer = setTimeout(connect, delay);
    };
  }

  /* Drop the socket now and resume on a new one (a half-dead socket after sleep, the network back). */
  function reconnect() {
    state.backoff = 500;
    if (state.ws && state.ws.readyState <= 1) {
      state.ws.close();  // onclose schedules the reconnect
    } else {
      connect();
    }
  }

  function startPings() {
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(function () {
      if (!state.connected) { return; }
      send({ type: "ping", ref: "ping" });
      clearTimeout(state.pongTimer);
      state.pongTimer = setTimeout(function () { reconnect(); }, PONG_WITHIN);
    }, PING_EVERY);
  }

  // ------------------------------------------------------------------ frames

  function handle(frame) {
    var answer = frame.ref && state.refs.get(frame.ref);
    if (answer && (frame.type === "done" || frame.type === "error" || frame.type === "ack"
                   || frame.type === "suggestions" || frame.type === "presence")) {
      state.refs.delete(frame.ref);
    }
    switch (frame.type) {
      case "welcome": return onWelcome(frame);
      case "event": return onEvent(frame);
      case "replayed": return;
      case "ack": return onAck(frame);
      case "typing": return onTyping(frame);
      case "receipt": return;
      case "offer": return onOffer(frame.offer);
      case "offer_revoked": return onOfferRevoked(frame);
      case "assigned": return onAssigned(frame);
      case "unassigned": return onUnassigned(frame);
      case "ticket_notice": return toast("Ticket #" + frame.ticket_id + " " + frame.event + ": " + frame.subject);
      case "presence": return setPresence(frame.status);
      case "suggestions": return answer ? answer(frame) : null;
      case "done": return answer ? answer(frame) : null;
      case "pong": clearTimeout(state.pongTimer); return;
      case "error": return onError(frame, answer);
    }
  }

  function onWelcome(frame) {
    state.connected = true;
    state.backoff = 500;
    setConnection("online", "Connected");
    setPresence(frame.agent.presence);
    state.limits = frame.limits;
    // Offers: the welcome is the truth (some may have expired or been taken while away).
    state.offers.clear();
    frame.offers.forEach(function (offer) { state.offers.set(offer.conversation_id, offer); });
    var owned = {};
    frame.conversations.forEach(function (info) {
      owned[info.id] = true;
      var conv = conversation(info.id);
      conv.info = info;
      conv.owned = true;
      conv.follow = true;
      conv.closed = null;
      if (conv.readSeq < info.agent_read_seq) { conv.readSeq = info.agent_read_seq; }
    });
    state.convs.forEach(function (conv) {
      if (conv.owned && !owned[conv.id]) { conv.owned = false; }  // its events (replayed now) say why
    });
    startPings();
    // Unacknowledged sends go again with their original client_id: stored once whatever happened.
    state.pending.forEach(function (item, clientId) { sendPending(clientId); });
    refreshQueue();
    renderAll();
    if (state.selected) { openConversation(state.selected, true); }
  }

  function renderAll() {
    renderQueue();
    renderConversations();
    updateComposer();
  }

  function conversation(id) {
    var conv = state.convs.get(id);
    if (!conv) {
      conv = { id: id, info: null, events: [], lastSeq: 0, readSeq: 0, owned: false, follow: true,
               closed: null, ticket: null, typing: null, typingTimer: null, lastVisitorSeq: 0 };
      state.convs.set(id, conv);
      state.order.unshift(id);
    }
    return conv;
  }

  function onEvent(event) {
    var conv = conversation(event.conversation_id);
    if (event.seq <= conv.lastSeq) { return; }  // already shown: replay after a drop, or a second socket
    conv.lastSeq = event.seq;
    conv.events.push(event);
    if (event.client_id) {
      state.pending.delete(event.client_id);
      var echo = document.querySelector('#transcript li[data-client-id="' + CSS.escape(event.client_id) + '"]');
      if (echo) { echo.remove(); }  // the stored event takes the place of the local echo
    }
    if (event.kind === "message" && event.role === "visitor") {
      conv.lastVisitorSeq = event.seq;
      conv.typing = null;
    }
    if (event.kind === "ticket" && event.data) { conv.ticket = event.data; }
    if (event.kind === "state" && event.data) {
      if (conv.info) { conv.info.state = event.data.to; }
      if (event.data.to === "ended" || event.data.to === "ticketed" || event.data.to === "ticket_pending") {
        conv.closed = conv.closed || event.data.to;
      }
    }
    if (conv.id === state.selected) {
      appendEvent(event);
      markRead(conv);
      if (event.kind === "message" && event.role === "visitor") { suggest(conv); }
      renderHeader();
      updateComposer();
    }
    renderConversations();
  }

  function onAck(ack) {
    state.pending.delete(ack.client_id);
    var echo = document.querySelector('#transcript li[data-client-id="' + CSS.escape(ack.client_id) + '"]');
    var conv = state.convs.get(ack.conversation_id);
    if (!echo) { return; }
    if (conv && conv.lastSeq >= ack.seq) { echo.remove(); return; }  // the event is shown already
    echo.classList.remove("pending");
    echo.firstChild.textContent = "Sent";
  }

  function onTyping(frame) {
    if (frame.role !== "visitor") { return; }
    var conv = state.convs.get(frame.conversation_id);
    if (!conv) { return; }
    conv.typing = frame.active ? Date.now() : null;
    clearTimeout(conv.typingTimer);
    if (frame.active) {
      conv.typingTimer = setTimeout(function () { conv.typing = null; renderTyping(); }, 8000);
    }
    renderTyping();
  }

  function onOffer(offer) {
    state.offers.set(offer.conversation_id, offer);  // de-duplicated by conversation (one offer each)
    state.problems.delete(offer.conversation_id);
    if (!state.highlighted) { state.highlighted = offer.conversation_id; }
    renderQueue();
    refreshQueue();
  }

  var REVOKED = {
    taken: "Another agent took this chat.",
    expired: "The offer expired and went to the next agent.",
    ended: "The visitor left.",
    ticketed: "It became a ticket.",
    declined: null,
    accepted: null
  };

  function onOfferRevoked(frame) {
    var offer = state.offers.get(frame.conversation_id);
    if (offer && offer.offer_id === frame.offer_id) {
      state.offers.delete(frame.conversation_id);
      var why = REVOKED[frame.reason];
      if (why) { notice(frame.conversation_id, why); }
    }
    renderQueue();
    refreshQueue();
  }

  /* A short message on a chat's card (which then leaves the queue), and as a toast. */
  function notice(conversationId, message) {
    state.problems.set(conversationId, message);
    toast(message, true);
    renderQueue();
    setTimeout(function () {
      state.problems.delete(conversationId);
      renderQueue();
    }, 6000);
  }

  function onAssigned(frame) {
    var info = frame.conversation;
    var conv = conversation(info.id);
    conv.info = info;
    conv.owned = true;
    conv.follow = true;
    conv.closed = null;
    state.offers.delete(info.id);
    state.waiting = state.waiting.filter(function (w) { return w.conversation_id !== info.id; });
    state.problems.delete(info.id);
    state.order = [info.id].concat(state.order.filter(function (id) { return id !== info.id; }));
    if (state.highlighted === info.id) { state.highlighted = null; }
    renderQueue();
    renderConversations();
    if (frame.reason === "transfer") { toast("A conversation was transferred to you."); }
    if (!state.selected || frame.reason === "accept" || frame.reason === "take_over") {
      openConversation(info.id);
    }
  }

  var UNASSIGNED = {
    transferred: "Transferred to another agent.",
    ended: "The chat has ended.",
    ticketed: "The chat became a ticket.",
    agent_lost: "The chat went back to the queue while you were away."
  };

  function onUnassigned(frame) {
    var conv = state.convs.get(frame.conversation_id);
    if (!conv) { return; }
    conv.owned = false;
    conv.closed = frame.reason;
    conv.typing = null;
    if (frame.conversation_id === state.selected) { renderHeader(); updateComposer(); renderTyping(); }
    renderConversations();
  }

  function onError(frame, answer) {
    if (frame.ref && frame.ref.indexOf("send:") === 0) { sendFailed(frame.ref.slice(5), frame); return; }
    if (frame.code === "resync_required" && frame.conversation_id) {
      var conv = state.convs.get(frame.conversation_id);
      if (conv) {  // our copy is ahead of the server (a restored backup): drop it, the server replays it all
        conv.events = [];
        conv.lastSeq = 0;
        if (conv.id === state.selected) { renderTranscript(); }
      }
      return;
    }
    if (answer) { answer(frame); return; }
    if (frame.code === "unauthorized") { toLogin(); return; }
    if (frame.code === "not_found" && frame.conversation_id) {
      var gone = state.convs.get(frame.conversation_id);
      if (gone) { gone.follow = false; }  // no longer ours to read (transferred away): stop asking for it
      return;
    }
    if (frame.code === "rate_limited") { return; }
    toast(frame.message, true);
  }

  // ------------------------------------------------------------------ presence

  var PRESENCE_HINT = {
    online: "",
    away: "Away: no new offers.",
    offline: "Offline: no offers. Go online to take chats."
  };

  function setPresence(status) {
    state.presence = status;
    document.querySelectorAll(".presence button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.status === status));
    });
    $("presence-hint").textContent = PRESENCE_HINT[status] || "";
    document.body.dataset.presence = status;
  }

  document.querySelectorAll(".presence button").forEach(function (button) {
    button.addEventListener("click", function () {
      command({ type: "presence", status: button.dataset.status }, function (frame) {
        if (frame.type === "presence") { setPresence(frame.status); }
        else { toast(frame.message, true); }
      });
    });
  });

  // ------------------------------------------------------------------ the queue

  var queueTimer = null;
  var queueInFlight = false;

  function refreshQueue() {
    if (queueInFlight) { return; }
    queueInFlight = true;
    getJson("/console/api/queue").then(function (body) {
      state.waiting = body.items;
      renderQueue();
    }).catch(function () { /* the next refresh tries again */ }).then(function () { queueInFlight = false; });
  }

  function queueItems() {
    var items = [];
    var seen = {};
    state.offers.forEach(function (offer) {
      seen[offer.conversation_id] = true;
      items.push({ id: offer.conversation_id, mine: true, question: offer.first_question, visitor: offer.visitor,
                   category: offer.category, priority: offer.priority, since: offer.waiting_since,
                   expires: offer.expires_at });
    });
    state.waiting.forEach(function (w) {
      if (seen[w.conversation_id] || (state.convs.get(w.conversation_id) || {}).owned) { return; }
      seen[w.conversation_id] = true;
      items.push({ id: w.conversation_id, mine: false, question: w.first_question, visitor: w.visitor,
                   category: w.category, priority: w.priority, since: w.waiting_since });
    });
    state.problems.forEach(function (message, id) {
      if (!seen[id]) { items.push({ id: id, gone: true, problem: message }); }
    });
    return items;
  }

  function renderQueue() {
    var list = $("offers");
    var items = queueItems();
    var live = items.filter(function (item) { return !item.gone; });
    if (state.highlighted && !live.some(function (item) { return item.id === state.highlighted; })) {
      state.highlighted = null;
    }
    if (!state.highlighted && live.length) { state.highlighted = live[0].id; }
    list.textContent = "";
    items.forEach(function (item) {
      var problem = state.problems.get(item.id) || item.problem;
      var li = el("li", { className: "offer" + (item.mine ? "" : " waiting-only") + (item.id === state.highlighted ? " selected" : ""),
                          "data-conversation": item.id, "data-mine": item.mine ? "true" : "false" });
      if (item.gone) {
        li.appendChild(el("p", { className: "problem", role: "status", text: problem }));
        list.appendChild(li);
        return;
      }
      var meta = el("div", { className: "meta" }, [
        item.priority ? el("span", { className: "badge priority-" + item.priority, title: "Predicted priority", text: item.priority }) : null,
        item.category ? el("span", { className: "badge", title: "Predicted category", text: item.category.replace(/_/g, " ") }) : null,
        el("span", { className: "wait", "data-since": item.since || "", text: "waiting " + ago(item.since) }),
        item.expires ? el("span", { className: "expires", "data-until": item.expires, text: left(item.expires) }) : null,
        item.mine ? el("span", { className: "badge count", text: "offered to you" }) : null
      ]);
      var who = visitorName(item.visitor) + (item.visitor && item.visitor.plan ? " · " + item.visitor.plan : "")
        + (item.visitor && item.visitor.community ? " · " + item.visitor.community : "");
      var accept = el("button", { type: "button", className: "primary small", "data-action": "accept",
                                  title: "Accept (a)", text: "Accept" });
      accept.addEventListener("click", function () { acceptChat(item.id); });
      var actions = el("div", { className: "actions" }, [accept]);
      if (item.mine) {
        var decline = el("button", { type: "button", className: "small", "data-action": "decline",
                                     title: "Decline (d)", text: "Decline" });
        decline.addEventListener("click", function () { declineChat(item.id); });
        actions.appendChild(decline);
      }
      li.appendChild(el("div", { className: "meta" }, [el("strong", { text: who })]));
      li.appendChild(el("p", { className: "question", text: item.question || "(no question yet)" }));
      li.appendChild(meta);
      li.appendChild(actions);
      if (problem) { li.appendChild(el("p", { className: "problem", role: "status", text: problem })); }
      li.addEventListener("click", function (event) {
        if (event.target.tagName !== "BUTTON") { state.highlighted = item.id; renderQueue(); }
      });
      list.appendChild(li);
    });
    $("queue-count").textContent = String(live.length);
    renderTitle();
    $("offers-empty").hidden = items.length > 0;
  }

  function acceptChat(conversationId) {
    var card = document.querySelector('#offers li[data-conversation="' + CSS.escape(conversationId) + '"]');
    if (card) { card.querySelectorAll("button").forEach(function (b) { b.disabled = true; }); }
    command({ type: "accept", conversation_id: conversationId }, function (frame) {
      if (frame.type === "error") {
        state.offers.delete(conversationId);
        state.waiting = state.waiting.filter(function (w) { return w.conversation_id !== conversationId; });
        notice(conversationId, frame.code === "already_taken" ? "Another agent took this chat."
               : frame.code === "at_capacity" ? "You are at your chat capacity." : frame.message);
        refreshQueue();
      }
    });
  }

  function declineChat(conversationId) {
    command({ type: "decline", conversation_id: conversationId }, function (frame) {
      if (frame.type === "error") { toast(frame.message, true); }
      state.offers.delete(conversationId);
      renderQueue();
    });
  }

  // ------------------------------------------------------------------ the conversation list

  function unread(conv) {
    var count = 0;
    conv.events.forEach(function (event) {
      if (event.kind === "message" && event.role === "visitor" && event.seq > conv.readSeq) { count += 1; }
    });
    return count;
  }

  function lastText(conv) {
    for (var i = conv.events.length - 1; i >= 0; i -= 1) {
      var event = conv.events[i];
      if ((event.kind === "message" || event.kind === "note") && event.text) { return event.text; }
    }
    return conv.info && conv.info.first_question || "";
  }

  function convTitle(conv) {
    if (conv.info) { return visitorName(conv.info.visitor); }
    if (boot.selected && boot.selected.id === conv.id) { return visitorName(boot.selected.visitor); }
    return "Visitor";
  }

  function renderConversations() {
    var list = $("conversations");
    list.textContent = "";
    var shown = 0;
    state.order.forEach(function (id) {
      var conv = state.convs.get(id);
      if (!conv || (!conv.owned && !conv.closed && id !== state.selected)) { return; }
      shown += 1;
      var count = id === state.selected ? 0 : unread(conv);
      var link = el("a", { href: "/console/conversations/" + id, "data-conversation": id,
                           "aria-current": id === state.selected ? "true" : null,
                           className: conv.owned ? "" : "ended" }, [
        el("span", { className: "title" }, [el("strong", { text: convTitle(conv) }), el("span", { text: lastText(conv) })]),
        conv.closed ? el("span", { className: "badge", text: closedLabel(conv.closed) }) : null,
        count ? el("span", { className: "badge count unread", title: count + " unread", text: String(count) }) : null
      ]);
      link.addEventListener("click", function (event) {
        event.preventDefault();
        openConversation(id);
      });
      list.appendChild(el("li", {}, [link]));
    });
    $("conversations-empty").hidden = shown > 0;
    renderTitle();
  }

  /* The tab's title counts offers and unread messages, so a busy agent sees them from another tab. */
  function renderTitle() {
    var total = 0;
    state.convs.forEach(function (conv) { if (conv.id !== state.selected) { total += unread(conv); } });
    var offers = state.offers.size;
    document.title = (offers ? "● " + offers + (offers > 1 ? " offers " : " offer ") : "")
      + (total ? "(" + total + ") " : "") + "Live chat · chatsvc";
  }

  function closedLabel(reason) {
    return { ended: "ended", ticketed: "ticket", ticket_pending: "ticket", transferred: "transferred",
             agent_lost: "returned" }[reason] || reason;
  }

  // ------------------------------------------------------------------ the open conversation

  function openConversation(id, keepScroll) {
    var changed = state.selected !== id;
    state.selected = id;
    var conv = conversation(id);
    if (changed) {
      var path = "/console/conversations/" + id;
      if (location.pathname !== path) { history.replaceState(null, "", path); }
      state.noteMode = false;
      $("composer-text").value = "";
      state.suggestFor = null;
      $("suggestions").textContent = "";
      $("suggestions-for").textContent = "";
    }
    renderHeader();
    renderTranscript(keepScroll);
    renderTyping();
    updateComposer();
    markRead(conv);
    renderConversations();
    if (conv.lastVisitorSeq) { suggest(conv); }
    loadMacros();
  }

  var STATE_LABEL = { bot: "with the bot", waiting: "waiting", with_agent: "live", ticket_pending: "becoming a ticket",
                      ticketed: "ticket", ended: "ended" };

  function renderHeader() {
    var conv = state.selected && state.convs.get(state.selected);
    if (!conv) { return; }
    var info = conv.info || (boot.selected && boot.selected.id === conv.id ? boot.selected : null);
    var visitor = info && info.visitor;
    $("conv-title").textContent = convTitle(conv);
    var details = [];
    if (visitor && visitor.email) { details.push(visitor.email); }
    if (visitor && visitor.plan) { details.push(visitor.plan); }
    if (visitor && visitor.community) { details.push(visitor.community); }
    $("conv-visitor").textContent = details.join(" · ");
    var badge = $("conv-state");
    var label = conv.closed ? closedLabel(conv.closed) : info && STATE_LABEL[info.state] || (conv.owned ? "live" : "");
    badge.textContent = label;
    badge.hidden = !label;
    var ticket = conv.ticket || (info && info.ticket_id ? { ticket_id: info.ticket_id, number: info.ticket_id } : null);
    var ticketLine = $("conv-ticket");
    ticketLine.textContent = "";
    if (ticket) {
      ticketLine.appendChild(document.createTextNode("Ticket "));
      ticketLine.appendChild(el("a", { href: "/console/tickets/" + encodeURIComponent(ticket.ticket_id),
                                       text: "#" + ticket.number }));
    }
  }

  function renderTranscript(keepScroll) {
    var list = $("transcript");
    list.textContent = "";
    var conv = state.convs.get(state.selected);
    (conv ? conv.events : []).forEach(function (event) { list.appendChild(eventItem(event)); });
    state.pending.forEach(function (item, clientId) {
      if (item.conversation_id === state.selected) { list.appendChild(pendingItem(item, clientId)); }
    });
    $("transcript-empty").hidden = list.children.length > 0;
    if (!keepScroll) { scrollDown(); }
  }

  function appendEvent(event) {
    var list = $("transcript");
    var first = list.querySelector("li[data-client-id]");
    list.insertBefore(eventItem(event), first);
    $("transcript-empty").hidden = true;
    scrollDown();
  }

  function scrollDown() {
    var box = $("transcript-scroll");
    box.scrollTop = box.scrollHeight;
  }

  function byline(text) { return el("span", { className: "byline", text: text }); }

  function eventItem(event) {
    var li = el("li", { "data-seq": String(event.seq), "data-kind": event.kind, "data-role": event.role });
    var author = event.author && event.author.name;
    switch (event.kind) {
      case "message":
        li.className = "from-" + event.role;
        li.appendChild(byline(event.role === "visitor" ? "Visitor" : event.role === "bot" ? "Help bot" : (author || "Agent")));
        li.appendChild(linkified(event.text || ""));
        break;
      case "note":
        li.className = "note";
        li.appendChild(byline("Internal note · " + (author || "Agent") + " · only agents see this"));
        li.appendChild(linkified(event.text || ""));
        break;
      case "suggestions":
        li.className = "from-bot";
        li.appendChild(byline("Help bot suggested"));
        ((event.data && event.data.articles) || []).forEach(function (article, i) {
          if (i) { li.appendChild(document.createTextNode(" · ")); }
          var href = safeUrl(article.url);
          li.appendChild(href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: article.title })
                              : document.createTextNode(article.title));
        });
        break;
      default:
        li.className = "system";
        li.textContent = systemText(event);
    }
    return li;
  }

  function systemText(event) {
    var data = event.data || {};
    var who = event.author && event.author.name;
    switch (event.kind) {
      case "state": return "Conversation " + (STATE_LABEL[data.to] || data.to) + (data.reason ? " (" + data.reason.replace(/_/g, " ") + ")" : "");
      case "agent_joined": return (who || "An agent") + " joined";
      case "agent_left": return "The agent left" + (data.reason ? " (" + data.reason + ")" : "");
      case "transferred": return "Transferred to " + ((data.to && data.to.name) || "another agent") + (who ? " by " + who : "");
      case "ticket": return "Became ticket #" + data.number;
      case "feedback": return "The visitor said an article " + (data.helpful ? "helped" : "did not help");
      default: return event.kind;
    }
  }

  function pendingItem(item, clientId) {
    var li = el("li", { className: (item.type === "note" ? "note" : "from-agent") + " pending", "data-client-id": clientId,
                        "data-kind": item.type === "note" ? "note" : "message", "data-role": "agent" });
    li.appendChild(byline("Sending…"));
    li.appendChild(document.createTextNode(item.text));
    return li;
  }

  function renderTyping() {
    var conv = state.selected && state.convs.get(state.selected);
    $("typing").textContent = conv && conv.typing && conv.owned ? convTitle(conv) + " is typing…" : "";
  }

  function markRead(conv) {
    if (conv.id !== state.selected || document.hidden) { return; }
    if (conv.lastVisitorSeq > conv.readSeq) {
      conv.readSeq = conv.lastVisitorSeq;
      if (conv.owned) { send({ type: "receipt", conversation_id: conv.id, seq: conv.readSeq, status: "read" }); }
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && state.selected) {
      markRead(conversation(state.selected));
      renderConversations();
    }
  });

  // ------------------------------------------------------------------ composer

  function updateComposer() {
    var conv = state.selected && state.convs.get(state.selected);
    var canReply = !!(conv && conv.owned && !conv.closed);
    var canNote = !!(conv && (conv.owned || state.agent.role !== "agent"));
    var text = $("composer-text");
    var noteMode = state.noteMode || (!canReply && canNote);
    text.disabled = !(noteMode ? canNote : canReply);
    $("send").disabled = text.disabled;
    $("mode-reply").setAttribute("aria-pressed", String(!noteMode));
    $("mode-note").setAttribute("aria-pressed", String(noteMode));
    $("mode-reply").disabled = !canReply;
    $("mode-note").disabled = !canNote;
    $("composer").classList.toggle("note-mode", noteMode);
    $("send").textContent = noteMode ? "Add note" : "Send";
    text.placeholder = noteMode ? "Write an internal note… only agents see it" : "Write a reply… (Enter sends, Shift+Enter for a new line)";
    $("composer-hint").textContent = !conv ? "" : noteMode ? "Internal note: never sent to the visitor."
      : canReply ? "Replies go to the visitor." : "This conversation is closed.";
    $("composer-status").textContent = state.connected ? "" : "Offline: messages are sent when the connection is back.";
    ["action-transfer", "action-convert", "action-end"].forEach(function (id) { $(id).disabled = !canReply; });
  }

  function setNoteMode(on) {
    state.noteMode = on;
    updateComposer();
    $("composer-text").focus();
  }

  $("mode-reply").addEventListener("click", function () { setNoteMode(false); });
  $("mode-note").addEventListener("click", function () { setNoteMode(true); });

  function sendComposer() {
    var box = $("composer-text");
    var text = box.value.trim();
    var conv = state.selected && state.convs.get(state.selected);
    if (!text || !conv || box.disabled) { return; }
    var max = (state.limits && state.limits.max_message_chars) || 4000;
    if (text.length > max) { toast("Messages are limited to " + max + " characters.", true); return; }
    var type = $("composer").classList.contains("note-mode") ? "note" : "message";
    var clientId = uuid();
    var item = { conversation_id: conv.id, type: type, text: text };
    state.pending.set(clientId, item);
    box.value = "";
    stopTyping();
    $("transcript").appendChild(pendingItem(item, clientId));
    $("transcript-empty").hidden = true;
    scrollDown();
    sendPending(clientId);  // when not connected, it goes on the next welcome
  }

  function sendPending(clientId) {
    var item = state.pending.get(clientId);
    if (!item) { return; }
    send({ type: item.type, conversation_id: item.conversation_id, client_id: clientId, text: item.text,
           ref: "send:" + clientId });
  }

  /* The server refused a message: a retryable refusal (the store was busy) is retried with the same
     client_id; any other (the chat ended meanwhile, too long) is shown on the message, which stays unsent. */
  function sendFailed(clientId, frame) {
    var item = state.pending.get(clientId);
    if (!item) { return; }
    if (frame.retryable) {
      setTimeout(function () { sendPending(clientId); }, 1000 + Math.random() * 2000);
      return;
    }
    state.pending.delete(clientId);
    var echo = document.querySelector('#transcript li[data-client-id="' + CSS.escape(clientId) + '"]');
    if (echo) {
      echo.classList.remove("pending");
      echo.classList.add("failed");
      echo.firstChild.textContent = "Not sent: " + frame.message;
    }
    toast("Not sent: " + frame.message, true);
  }

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    sendComposer();
  });

  $("composer-text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendComposer();
    } else if (event.key === "Escape") {
      event.target.blur();
    }
  });

  $("composer-text").addEventListener("input", function () {
    var conv = state.selected && state.convs.get(state.selected);
    if (!conv || !conv.owned || $("composer").classList.contains("note-mode")) { return; }
    var now = Date.now();
    if (now - state.typingSent > 3000) {
      state.typingSent = now;
      send({ type: "typing", conversation_id: conv.id, active: true });
    }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(stopTyping, TYPING_IDLE);
  });

  function stopTyping() {
    clearTimeout(state.typingTimer);
    if (state.typingSent && state.selected) {
      send({ type: "typing", conversation_id: state.selected, active: false });
    }
    state.typingSent = 0;
  }

  function insertText(text) {
    var box = $("composer-text");
    if (box.disabled) { return; }
    var start = box.selectionStart, end = box.selectionEnd;
    var before = box.value.slice(0, start), after = box.value.slice(end);
    var glue = before && !/\s$/.test(before) ? " " : "";
    box.value = before + glue + text + after;
    var caret = (before + glue + text).length;
    box.focus();
    box.setSelectionRange(caret, caret);
  }

  // ------------------------------------------------------------------ suggestions and macros

  function suggest(conv) {
    if (!conv.lastVisitorSeq) { return; }
    var key = conv.id + ":" + conv.lastVisitorSeq;
    if (state.suggestFor === key || !state.connected) { return; }
    state.suggestFor = key;
    command({ type: "suggest", conversation_id: conv.id, k: 3 }, function (frame) {
      if (state.suggestFor !== key) { return; }
      renderSuggestions(frame);
    });
  }

  function renderSuggestions(frame) {
    var list = $("suggestions");
    list.textContent = "";
    if (frame.type !== "suggestions") { $("suggestions-for").textContent = ""; return; }
    $("suggestions-for").textContent = frame.question ? "For “" + frame.question + "”" : "";
    if (frame.no_match) {
      list.appendChild(el("li", { className: "muted", text: "No article is a close match; the nearest:" }));
    }
    frame.articles.forEach(function (article) {
      var href = safeUrl(article.url);
      var insert = el("button", { type: "button", className: "small", "data-article": article.id, text: "Insert link" });
      insert.addEventListener("click", function () { insertText(article.title + ": " + (href || article.url)); });
      list.appendChild(el("li", {}, [
        el("div", { className: "title" }, [href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: article.title })
                                                : document.createTextNode(article.title)]),
        el("p", { className: "passage", text: article.passage }),
        insert
      ]));
    });
  }

  function loadMacros() {
    if (state.macros) { return; }
    state.macros = [];
    getJson("/api/v1/macros").then(function (body) {
      state.macros = body.items;
      var list = $("macros");
      list.textContent = "";
      body.items.forEach(function (macro) {
        var button = el("button", { type: "button", className: "small", "data-macro": macro.id, title: macro.body,
                                    text: macro.name });
        button.addEventListener("click", function () { useMacro(macro.id); });
        list.appendChild(el("li", {}, [button]));
      });
    }).catch(function (error) { state.macros = null; toast("Macros: " + error.message, true); });
  }

  function useMacro(macroId) {
    if (!state.selected) { return; }
    getJson("/console/api/conversations/" + encodeURIComponent(state.selected) + "/macros/" + encodeURIComponent(macroId))
      .then(function (body) { insertText(body.text); })
      .catch(function (error) { toast(error.message, true); });
  }

  // ------------------------------------------------------------------ actions

  /* Convert and End take a second click within a few seconds: no accidental, irreversible clicks. */
  function confirmable(button, label, confirmLabel, action) {
    button.addEventListener("click", function () {
      if (button.dataset.confirming === "true") {
        clearTimeout(state.confirmTimer);
        button.dataset.confirming = "false";
        button.textContent = label;
        action();
        return;
      }
      button.dataset.confirming = "true";
      button.textContent = confirmLabel;
      clearTimeout(state.confirmTimer);
      state.confirmTimer = setTimeout(function () {
        button.dataset.confirming = "false";
        button.textContent = label;
      }, 5000);
    });
  }

  confirmable($("action-convert"), "Convert to ticket", "Click again to convert", function () {
    var id = state.selected;
    command({ type: "convert", conversation_id: id }, function (frame) {
      if (frame.type === "error") { toast(frame.message, true); } else { toast("Converted to a ticket."); }
    });
  });

  confirmable($("action-end"), "End chat", "Click again to end", function () {
    command({ type: "end", conversation_id: state.selected, resolution: "resolved" }, function (frame) {
      if (frame.type === "error") { toast(frame.message, true); }
    });
  });

  $("action-transfer").addEventListener("click", function () {
    var dialog = $("transfer-dialog");
    var select = $("transfer-to");
    select.textContent = "";
    getJson("/console/api/agents").then(function (body) {
      var others = body.items.filter(function (a) { return a.id !== state.agent.id && a.presence === "online"; });
      others.forEach(function (a) {
        select.appendChild(el("option", { value: a.id, text: a.name + " (" + a.active_chats + "/" + a.capacity + " chats)" }));
      });
      $("transfer-empty").hidden = others.length > 0;
      dialog.showModal();
    }).catch(function (error) { toast(error.message, true); });
  });

  $("transfer-dialog").addEventListener("close", function () {
    var dialog = $("transfer-dialog");
    var target = $("transfer-to").value;
    if (dialog.returnValue !== "transfer" || !target || !state.selected) { return; }
    command({ type: "transfer", conversation_id: state.selected, agent_id: target }, function (frame) {
      if (frame.type === "error") { toast(frame.message, true); } else { toast("Transferred."); }
    });
  });

  // ------------------------------------------------------------------ keyboard

  function typingInField(event) {
    var target = event.target;
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT"
                      || target.isContentEditable);
  }

  function moveHighlight(step) {
    var items = queueItems().filter(function (item) { return !item.gone; });
    if (!items.length) { return; }
    var index = items.findIndex(function (item) { return item.id === state.highlighted; });
    index = (index + step + items.length) % items.length;
    state.highlighted = items[index].id;
    renderQueue();
  }

  function moveConversation(step) {
    var ids = Array.prototype.map.call(document.querySelectorAll("#conversations a"), function (a) {
      return a.dataset.conversation;
    });
    if (!ids.length) { return; }
    var index = ids.indexOf(state.selected);
    openConversation(ids[(index + step + ids.length) % ids.length]);
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey && !event.ctrlKey && !event.metaKey) {
      if (event.key === "ArrowDown") { event.preventDefault(); moveConversation(1); return; }
      if (event.key === "ArrowUp") { event.preventDefault(); moveConversation(-1); return; }
      if (event.key === "n" || event.key === "N" || event.code === "KeyN") {
        event.preventDefault();
        setNoteMode(!$("composer").classList.contains("note-mode"));
        return;
      }
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typingInField(event)) { return; }
    if ($("shortcuts").open || $("transfer-dialog").open) { return; }
    var highlighted = state.highlighted;
    switch (event.key) {
      case "a":
        if (highlighted) { event.preventDefault(); acceptChat(highlighted); }
        break;
      case "d":
        if (highlighted && state.offers.has(highlighted)) { event.preventDefault(); declineChat(highlighted); }
        break;
      case "j": event.preventDefault(); moveHighlight(1); break;
      case "k": event.preventDefault(); moveHighlight(-1); break;
      case "/":
        if (!$("composer-text").disabled) { event.preventDefault(); $("composer-text").focus(); }
        break;
      case "?": event.preventDefault(); $("shortcuts").showModal(); break;
    }
  });

  // ------------------------------------------------------------------ keeping up

  window.addEventListener("online", reconnect);  // the network is back: do not wait for the backoff
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && (!state.ws || state.ws.readyState > 1)) { reconnect(); }
  });
  // After a laptop sleep timers stall; a big jump in wall-clock time means the socket may be dead.
  var lastTick = Date.now();
  setInterval(function () {
    var now = Date.now();
    if (now - lastTick > 30000 && state.connected) { reconnect(); }
    lastTick = now;
    document.querySelectorAll("#offers .wait").forEach(function (span) {
      span.textContent = "waiting " + ago(span.dataset.since);
    });
    document.querySelectorAll("#offers .expires").forEach(function (span) {
      span.textContent = left(span.dataset.until);
    });
  }, 1000);
  queueTimer = setInterval(function () { if (!document.hidden && state.connected) { refreshQueue(); } }, QUEUE_REFRESH);

  /* For the browser's developer tools: the state, and a way to drop the socket to see the resume. */
  window.chatsvcConsole = {
    state: state,
    reconnect: reconnect,
    drop: function () { if (state.ws) { state.ws.close(); } }
  };

  if (boot.selected) {
    var first = conversation(boot.selected.id);
    first.follow = true;
    state.selected = boot.selected.id;
  }
  renderQueue();
  renderConversations();
  updateComposer();
  if (state.selected) { openConversation(state.selected); }
  connect();
}());
