// The student chat. Plain JS, no build step. The token is read from this page's own address and only
// ever sent back to the same origin. Replies stream over fetch + ReadableStream (EventSource cannot POST).
"use strict";

(() => {
  const token = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  const api = "/api/intakes/" + encodeURIComponent(token);
  const PENDING_KEY = "intake-pending";
  const THINKING_AFTER_MS = 1000;
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000];
  const BUSY_RETRY_MS = 2000;
  const BUSY_RETRIES = 45; // a dropped stream's turn is still running server-side: wait for it

  const $ = (id) => document.getElementById(id);
  const el = {
    loading: $("loading"), intro: $("intro"), chat: $("chat"), finished: $("finished"),
    courseLine: $("course-line"), when: $("when"), counter: $("counter"),
    introTitle: $("intro-title"), introLead: $("intro-lead"), introWho: $("intro-who"),
    introRetention: $("intro-retention"), introLength: $("intro-length"), agree: $("agree"),
    messages: $("messages"), thinking: $("thinking"), chatTitle: $("chat-title"),
    queue: $("queue"), queueText: $("queue-text"),
    error: $("error"), errorText: $("error-text"), retry: $("retry"),
    finishedTitle: $("finished-title"), finishedText: $("finished-text"), rate: $("rate"),
    rateThanks: $("rate-thanks"), composer: $("composer"), input: $("input"), send: $("send"),
    announcer: $("announcer"),
  };

  let view = null;
  let busy = false;
  let retryAction = null;

  // --- talking to the server ------------------------------------------------------------------

  class Problem extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function problemFrom(res) {
    let detail = "";
    try {
      const body = await res.json();
      detail = typeof body.detail === "string" ? body.detail : (typeof body.title === "string" ? body.title : "");
    } catch (_) { /* not JSON: fall through to a generic sentence */ }
    if (!detail) {
      detail = res.status >= 500
        ? "The server is having trouble right now. Please try again in a minute."
        : "Something went wrong (error " + res.status + "). Please reload the page.";
    }
    return new Problem(res.status, detail);
  }

  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) throw await problemFrom(res);
    return res.json();
  }

  async function postJSON(url, body) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    if (!res.ok) throw await problemFrom(res);
    return res.json();
  }

  // Parse a text/event-stream body; calls onEvent(name, data) per event. Resolves when the body ends.
  async function readEvents(res, onEvent) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let match;
      while ((match = buffer.match(/\r\n\r\n|\n\n|\r\r/))) {
        const block = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        let name = "message";
        const data = [];
        for (const line of block.split(/\r\n|\n|\r/)) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") name = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  // One attempt at a turn. Returns {done, error}; throws Problem (HTTP error) or TypeError (network).
  async function attemptTurn(text, clientTurnId, onToken, onQueue) {
    const res = await fetch(api + "/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ text, client_turn_id: clientTurnId }),
    });
    if (!res.ok) throw await problemFrom(res);
    const result = { done: null, error: null };
    await readEvents(res, (name, data) => {
      if (name === "token" && typeof data.text === "string") onToken(data.text);
      else if (name === "queue" && Number.isInteger(data.position)) onQueue(data.position);
      else if (name === "error") result.error = data;
      else if (name === "done") result.done = data;
    });
    if (!result.done) throw new TypeError("the reply stream ended early");
    return result;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- rendering --------------------------------------------------------------------------------

  function firstName(name) { return (name || "").trim().split(/\s+/)[0] || ""; }

  function formatWhen(iso, weekday) {
    const date = new Date(iso);
    if (isNaN(date)) return "";
    const options = { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
    if (weekday) options.weekday = "long";
    return date.toLocaleString(undefined, options);
  }

  function show(node, visible) { node.hidden = !visible; }

  function whoLabel(role, author) {
    if (role === "student") return "You";
    if (role === "staff") return (author || (view && view.staff_name) || (view && view.instructor_name) || "Course staff") + " (course staff)";
    return "Assistant";
  }

  function messageNode(role, text, author) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = whoLabel(role, author);
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (role === "assistant") fillWithLinks(bubble, text);
    else bubble.textContent = text;
    li.append(who, bubble);
    return li;
  }

  // The assistant's own web addresses (the booking's reschedule and cancel pages) become links; the text
  // is never parsed as HTML.
  function fillWithLinks(node, text) {
    const parts = text.split(/(https:\/\/[^\s<>"']+)/);
    node.replaceChildren(...parts.map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const a = document.createElement("a");
      a.href = part;
      a.textContent = part;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      return a;
    }));
  }

  function renderMessages() {
    el.messages.replaceChildren(...view.messages.map((m) => messageNode(m.role, m.text, m.author)));
    renderStaffNotice();
  }

  // While a staff member has taken the chat over: who is answering, below the newest message.
  function renderStaffNotice() {
    let notice = document.getElementById("staff-notice");
    if (!notice) {
      notice = document.createElement("p");
      notice.id = "staff-notice";
      notice.className = "staff-notice";
      el.messages.after(notice); // next to the newest line, where the student is looking
    }
    const name = view.staff_name || "A member of the course staff";
    notice.textContent = name + " from the course staff is answering you now: a person, not the assistant.";
    notice.hidden = !view.taken_over || FINISHED.has(view.status);
  }

  function counterText() {
    const n = Math.min(view.turn + 1, view.max_turns);
    return "Question " + n + " of at most " + view.max_turns;
  }

  const FINISHED = new Set(["complete", "partial", "escalated"]);

  function render() {
    const instructor = view.instructor_name || "your instructor";
    el.courseLine.textContent = view.course + " office hours";
    el.when.textContent = formatWhen(view.appointment_start);
    show(el.loading, false);

    if (view.status === "cancelled") {
      showClosed("This booking was cancelled, so this chat is closed. Nothing you wrote here is kept.");
      return;
    }
    if (!view.consented) {
      el.introLead.textContent = "A short chat before your office hours with " + instructor + " for " +
        view.course + (view.course_title ? " (" + view.course_title + ")" : "") +
        ". It helps you say what you need, so the meeting can start in the right place.";
      el.introWho.textContent = instructor + " (and course staff, such as TAs) read this chat and a short summary before your meeting.";
      el.introRetention.textContent = view.retention_days > 0
        ? "It is deleted " + view.retention_days + " days after your meeting, or right away if you cancel the booking."
        : "It is deleted after your meeting, or right away if you cancel the booking.";
      el.introLength.textContent = "At most " + view.max_turns + " short questions. It takes a few minutes.";
      show(el.intro, true);
      show(el.chat, false);
      show(el.composer, false);
      show(el.counter, false);
      return;
    }

    show(el.intro, false);
    show(el.chat, true);
    renderMessages();
    const finished = FINISHED.has(view.status);
    show(el.counter, !finished && !view.taken_over);
    el.counter.textContent = counterText();
    show(el.composer, !finished);
    show(el.finished, finished);
    if (finished) renderFinished(instructor);
  }

  function renderFinished(instructor) {
    const name = firstName(view.student_name);
    if (view.status === "escalated") {
      el.finishedTitle.textContent = "Thank you for telling us";
      el.finishedText.textContent = instructor + " has been told and will see this before your meeting. " +
        "If you need help right now, please use the contacts in the message above.";
      show(el.rate, false);
      return;
    }
    if (view.status === "partial") {
      el.finishedTitle.textContent = "This chat is closed";
      el.finishedText.textContent = "Your meeting is coming up, so " + instructor +
        " already received what you wrote here. See you at office hours!";
    } else {
      el.finishedTitle.textContent = "You're all set" + (name ? ", " + name : "") + "!";
      el.finishedText.textContent = instructor + " will read a short summary before your meeting" +
        (view.appointment_start ? " on " + formatWhen(view.appointment_start, true) : "") + ". You can close this page now.";
    }
    show(el.rate, true);
  }

  function showClosed(text) {
    show(el.intro, false);
    show(el.composer, false);
    show(el.counter, false);
    show(el.chat, false);
    show(el.finished, true);
    show(el.rate, false);
    el.finishedTitle.textContent = "This chat is closed";
    el.finishedText.textContent = text;
  }

  function showError(text, action) {
    el.errorText.textContent = text;
    retryAction = action || null;
    show(el.retry, Boolean(action));
    show(el.error, true);
  }

  function hideError() {
    show(el.error, false);
    retryAction = null;
  }

  // The model is busy with other students: a steady line, not a spinner, says where this student is.
  function queueText(position) {
    if (position <= 1) return "You're next. The assistant is finishing another student's reply; your message is saved.";
    return "You're number " + position + " in line. The assistant answers one group of students at a time; your message is saved.";
  }

  function showQueue(position, answering) {
    if (answering) return;
    show(el.thinking, false);
    el.queueText.textContent = queueText(position);
    show(el.queue, true);
  }

  function announce(text) {
    el.announcer.textContent = "";
    // a fresh text node after a tick makes screen readers announce even a repeated sentence
    setTimeout(() => { el.announcer.textContent = text; }, 50);
  }

  function lastMessage(role) {
    for (let i = view.messages.length - 1; i >= 0; i--) if (view.messages[i].role === role) return view.messages[i];
    return null;
  }

  function scrollToEnd() {
    // the page itself scrolls (the composer is sticky at the bottom), so the end of the page is the newest line
    window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "auto" });
  }

  // --- pending message, kept across a reload ----------------------------------------------------

  function savePending(text, id) {
    try { sessionStorage.setItem(PENDING_KEY, JSON.stringify({ path: location.pathname, text, id })); } catch (_) {}
  }
  function clearPending() { try { sessionStorage.removeItem(PENDING_KEY); } catch (_) {} }
  function loadPending() {
    try {
      const p = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
      return p && p.path === location.pathname ? p : null;
    } catch (_) { return null; }
  }

  function newTurnId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  let pendingId = null; // reused while the same text is re-sent, so the server can replay, not repeat

  // --- actions ----------------------------------------------------------------------------------

  async function load() {
    view = await getJSON(api);
    render();
  }

  async function agree() {
    el.agree.disabled = true;
    el.agree.textContent = "Starting…";
    hideError();
    try {
      view = await postJSON(api + "/consent");
      render();
      scrollToEnd();
      const opening = lastMessage("assistant");
      if (opening) announce(opening.text);
      el.input.focus();
    } catch (err) {
      showError(err instanceof Problem ? err.message : "We could not reach the server. Check your connection and try again.");
      el.agree.disabled = false;
      el.agree.textContent = "I agree, start the chat";
    }
  }

  function setBusy(value) {
    busy = value;
    el.send.disabled = value;
    el.input.readOnly = value;
    el.send.textContent = value ? "Sending…" : "Send";
  }

  async function send(text) {
    if (busy) return;
    const clean = text.trim();
    if (!clean) {
      showError("Type an answer first, then send it.");
      el.input.focus();
      return;
    }
    const pending = loadPending();
    const id = pending && pending.text === clean && pending.id ? pending.id : (pendingId && el.input.dataset.sentText === clean ? pendingId : newTurnId());
    pendingId = id;
    el.input.dataset.sentText = clean;
    savePending(clean, id);
    hideError();
    setBusy(true);

    el.messages.append(messageNode("student", clean));
    const reply = messageNode("assistant", "");
    reply.classList.add("streaming");
    const bubble = reply.querySelector(".bubble");
    el.messages.append(reply);
    el.input.value = "";
    scrollToEnd();

    let gotToken = false;
    const thinkingTimer = setTimeout(() => { if (!gotToken) show(el.thinking, true); }, THINKING_AFTER_MS);
    const onToken = (piece) => {
      if (!gotToken) { gotToken = true; show(el.thinking, false); show(el.queue, false); }
      bubble.textContent += piece;
      scrollToEnd();
    };

    const onQueue = (position) => showQueue(position, gotToken);

    let outcome = null;
    let failure = null;
    for (let attempt = 0, busyTries = 0; ; ) {
      try {
        bubble.textContent = "";
        gotToken = false;
        outcome = await attemptTurn(clean, id, onToken, onQueue);
        break;
      } catch (err) {
        if (err instanceof Problem) {
          if (err.status === 409 && attempt > 0 && busyTries < BUSY_RETRIES) {
            busyTries += 1; // our own earlier attempt is still being answered: wait for its replay
            await sleep(BUSY_RETRY_MS);
            continue;
          }
          failure = err.message;
          break;
        }
        if (attempt >= RETRY_DELAYS_MS.length) {
          failure = "The connection dropped. Your message is still here: try again when you are back online.";
          break;
        }
        show(el.thinking, true);
        await sleep(RETRY_DELAYS_MS[attempt]);
        attempt += 1;
      }
    }
    clearTimeout(thinkingTimer);
    show(el.thinking, false);
    show(el.queue, false);

    if (outcome && !outcome.error) {
      clearPending();
      pendingId = null;
      delete el.input.dataset.sentText;
    }
    try {
      await load(); // the stored transcript is the truth (a reply may have been replaced after streaming)
    } catch (_) { /* keep what is on screen */ }
    setBusy(false);
    if (liveWaiting) applyLive(liveWaiting);

    if (failure || (outcome && outcome.error)) {
      el.input.value = clean; // never lose what the student wrote
      const message = failure || outcome.error.message;
      showError(message, () => send(el.input.value));
      el.input.focus();
      return;
    }
    if (FINISHED.has(view.status)) {
      const last = lastMessage("assistant");
      announce((last ? last.text + " " : "") + el.finishedTitle.textContent);
      el.finishedTitle.focus();
      el.finished.scrollIntoView({ block: "start" });
      return;
    }
    const last = view.messages[view.messages.length - 1];
    if (last && last.role !== "student") announce(counterText() + ". " + last.text);
    else if (view.taken_over) announce("Sent. A member of the course staff will answer here.");
    scrollToEnd();
    el.input.focus();
  }

  async function rate(value, button) {
    const buttons = el.rate.querySelectorAll("button[data-value]");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      view = await postJSON(api + "/rating", { value });
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      el.rateThanks.textContent = "Thanks for telling us.";
    } catch (err) {
      el.rateThanks.textContent = err instanceof Problem ? err.message : "That did not go through. Please try again.";
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // --- live: the server pushes the chat's state when it changes (a staff member's message, a take-over) ---

  let liveSource = null;
  let liveWaiting = null; // a state that arrived during our own turn: applied once the turn is done

  function connectLive() {
    if (liveSource || !window.EventSource) return;
    liveSource = new EventSource(api + "/events");
    liveSource.addEventListener("state", (event) => {
      let next = null;
      try { next = JSON.parse(event.data); } catch (_) { return; }
      if (busy) { liveWaiting = next; return; }
      applyLive(next);
    });
    liveSource.addEventListener("error", () => {
      if (liveSource.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      liveSource = null;
      setTimeout(connectLive, 10000);
    });
  }

  function applyLive(next) {
    liveWaiting = null;
    if (!view || !view.consented || busy) return;
    if (next.messages.length < view.messages.length) return; // older than what is on screen
    const changed = next.messages.length !== view.messages.length || next.status !== view.status ||
      next.taken_over !== view.taken_over;
    if (!changed) return;
    const before = view.messages.length;
    const tookOver = next.taken_over && !view.taken_over;
    view = next;
    const draft = el.input.value;
    render();
    el.input.value = draft;
    const fresh = view.messages.slice(before).filter((m) => m.role !== "student");
    const spoken = fresh.map((m) => whoLabel(m.role, m.author) + ": " + m.text);
    if (tookOver) spoken.unshift((view.staff_name || "A member of the course staff") + " from the course staff is answering you now.");
    if (spoken.length) announce(spoken.join(" "));
    scrollToEnd();
    if (next.status === "cancelled" && liveSource) { liveSource.close(); liveSource = null; }
  }

  // --- wiring -----------------------------------------------------------------------------------

  el.agree.addEventListener("click", agree);
  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send(el.input.value);
  });
  el.input.addEventListener("keydown", (event) => {
    // Enter sends on a keyboard; on a phone Enter stays a new line and the Send button sends
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && matchMedia("(pointer: fine)").matches) {
      event.preventDefault();
      send(el.input.value);
    }
  });
  el.retry.addEventListener("click", () => { if (retryAction) retryAction(); });
  el.rate.querySelectorAll("button[data-value]").forEach((button) => {
    button.addEventListener("click", () => rate(button.dataset.value, button));
  });

  (async () => {
    try {
      await load();
    } catch (err) {
      show(el.loading, false);
      showError(err instanceof Problem ? err.message : "We could not load your chat. Check your connection and reload the page.",
        () => location.reload());
      return;
    }
    const pending = loadPending();
    if (pending && view.consented && !FINISHED.has(view.status)) {
      const lastStudent = lastMessage("student");
      if (lastStudent && lastStudent.text === pending.text) clearPending(); // it went through before the reload
      else {
        el.input.value = pending.text;
        pendingId = pending.id;
        el.input.dataset.sentText = pending.text;
      }
    }
    if (view.consented) {
      scrollToEnd();
      if (!FINISHED.has(view.status)) el.input.focus({ preventScroll: true });
    } else {
      el.introTitle.focus({ preventScroll: true });
    }
    connectLive();
  })();
})();
