// Staff pages: the dashboard (grouped, filtered, live) and one intake (summary first, live transcript,
// take-over, hand-back, acknowledge). Live updates come by server push (EventSource), never by polling.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const page = document.body.dataset.page;

  class Problem extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  // Litestar's CSRF middleware: every state-changing request carries the staff_csrf cookie's token
  const csrf = () => (document.cookie.match(/(?:^|;\s*)staff_csrf=([^;]+)/) || [])[1] || "";
  document.querySelectorAll('form[method="post"]').forEach((form) => {
    const field = document.createElement("input");
    field.type = "hidden"; field.name = "_csrf_token"; field.value = csrf();
    form.appendChild(field);
  });

  function toLogin() {
    location.assign("/staff/login?next=" + encodeURIComponent(location.pathname));
  }

  async function request(url, body) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" }, cache: "no-store" }
      : { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() }, body: JSON.stringify(body) };
    const res = await fetch(url, init);
    if (res.status === 401) {
      toLogin();
      throw new Problem(401, "Please log in again.");
    }
    if (!res.ok) {
      let detail = "";
      try { detail = (await res.json()).detail || ""; } catch (_) {}
      throw new Problem(res.status, detail || "The server answered with error " + res.status + ".");
    }
    return res.json();
  }

  function showError(err) {
    const node = $("error");
    if (!err) { node.hidden = true; return; }
    node.textContent = err instanceof Problem ? err.message : "The server cannot be reached right now.";
    node.hidden = false;
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(undefined, { weekday: "short", month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
  }

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function badge(text, kind) { return node("span", "badge " + (kind || ""), text); }

  function announce(text) {
    const a = $("announcer");
    a.textContent = "";
    setTimeout(() => { a.textContent = text; }, 50);
  }

  // One EventSource with a visible state; the browser reconnects after a drop, we after a refusal.
  function live(url, handlers) {
    const label = $("live");
    let source = null;
    const open = () => {
      source = new EventSource(url);
      source.addEventListener("open", () => { label.textContent = "Live"; label.classList.add("on"); });
      source.addEventListener("error", () => {
        label.textContent = "Reconnecting…";
        label.classList.remove("on");
        if (source.readyState === EventSource.CLOSED) setTimeout(open, 5000);
      });
      source.addEventListener("ended", (event) => {
        source.close();
        label.textContent = "Not live";
        try { showError(new Problem(401, JSON.parse(event.data).message)); } catch (_) {}
        toLogin();
      });
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          let data = {};
          try { data = JSON.parse(event.data); } catch (_) { return; }
          handler(data);
        });
      }
    };
    open();
  }

  // --- dashboard --------------------------------------------------------------------------------

  const GROUPS = ["attention", "upcoming", "past"];
  const rows = new Map(); // id -> row
  let seenAttention = null; // ids already announced as needing attention

  function filters() {
    return { course: $("filter-course").value, status: $("filter-status").value };
  }

  function visible(row, f) {
    if (f.course && row.course !== f.course) return false;
    if (f.status === "attention") return row.group === "attention";
    return !f.status || row.status === f.status;
  }

  function epoch(row) { const t = Date.parse(row.appointment_start); return isNaN(t) ? 0 : t; }

  function rowNode(row) {
    const li = node("li", "row" + (row.group === "attention" ? " needs" : ""));
    li.dataset.id = row.staff_id;
    const top = node("div", "row-top");
    const link = node("a", "row-link", row.student_name);
    link.href = "/staff/intakes/" + encodeURIComponent(row.staff_id);
    const badges = node("span", "badges");
    for (const label of row.attention_labels) badges.append(badge(label, "alert"));
    if (!row.attention.includes("escalated")) badges.append(badge(row.status_label, row.status));
    top.append(link, badges);
    const meta = node("p", "row-meta", row.course_code + " · " + row.meeting_time);
    li.append(top, meta);
    const focus = [row.topic, row.assignment].filter(Boolean).join(" · ");
    if (focus) li.append(node("p", "row-focus", focus));
    return li;
  }

  function renderList() {
    const f = filters();
    const all = [...rows.values()];
    let shown = 0;
    for (const group of GROUPS) {
      const list = all.filter((r) => r.group === group && visible(r, f));
      list.sort((a, b) => group === "past" ? epoch(b) - epoch(a) : epoch(a) - epoch(b));
      $("rows-" + group).replaceChildren(...list.map(rowNode));
      $("count-" + group).textContent = "(" + list.length + ")";
      $("group-" + group).hidden = list.length === 0 && group !== "upcoming";
      shown += list.length;
    }
    $("empty").hidden = shown > 0;
    $("empty").textContent = all.length ? "No intakes match these filters." : "No intakes yet. They appear when students book office hours.";
    announceNewAttention(all);
  }

  function announceNewAttention(all) {
    const now = all.filter((r) => r.group === "attention");
    if (seenAttention === null) { seenAttention = new Set(now.map((r) => r.staff_id)); return; }
    const fresh = now.filter((r) => !seenAttention.has(r.staff_id));
    fresh.forEach((r) => seenAttention.add(r.staff_id));
    if (fresh.length) {
      announce(fresh.map((r) => "Needs attention: " + r.student_name + ", " + r.course_code + ", " + r.attention_labels.join(", ")).join(". "));
    }
    document.title = (now.length ? "(" + now.length + ") " : "") + "Intakes · Office hours intake";
  }

  async function loadList() {
    try {
      const list = await request("/staff/api/intakes");
      rows.clear();
      for (const row of list) rows.set(row.staff_id, row);
      renderList();
      showError(null);
    } catch (err) { showError(err); }
  }

  async function loadCourses() {
    try {
      const courses = await request("/staff/api/courses");
      const options = courses.map((c) => { const o = node("option", "", c.code + " · " + c.title); o.value = c.slug; return o; });
      $("filter-course").append(...options);
      $("broadcast-course").replaceChildren(...options.map((o) => o.cloneNode(true)));
      $("broadcast").hidden = courses.length === 0;
    } catch (err) { showError(err); }
  }

  function readFilters() {
    const q = new URLSearchParams(location.search);
    $("filter-course").value = q.get("course") || "";
    $("filter-status").value = q.get("status") || "";
  }

  function writeFilters() {
    const f = filters();
    const q = new URLSearchParams();
    if (f.course) q.set("course", f.course);
    if (f.status) q.set("status", f.status);
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
    renderList();
  }

  function wireBroadcast() {
    $("broadcast-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const start = new Date($("broadcast-start").value);
      const end = new Date($("broadcast-end").value);
      const status = $("broadcast-status");
      if (isNaN(start) || isNaN(end)) { status.textContent = "Choose when the window starts and ends."; return; }
      $("broadcast-send").disabled = true;
      try {
        const sent = await request("/staff/api/broadcast", {
          course: $("broadcast-course").value, start: start.toISOString(), end: end.toISOString(),
          message: $("broadcast-message").value,
        });
        status.textContent = sent.recipients
          ? "Sent to " + sent.recipients + " student" + (sent.recipients === 1 ? "" : "s") + "."
          : "Nobody is booked in that window; nothing was sent.";
        if (sent.recipients) $("broadcast-message").value = "";
      } catch (err) {
        status.textContent = err instanceof Problem ? err.message : "That did not go through. Please try again.";
      } finally { $("broadcast-send").disabled = false; }
    });
  }

  // --- failed deliveries (dead letters) on the dashboard ---------------------------------------

  const KIND_NAMES = {
    prepare: "Preparing the intake", invite_email: "Invitation email", summarize: "Writing the summary",
    summary_email: "Summary email", summary_calcom: "Summary on Cal.com", staff_alert: "Alert to the course staff",
    broadcast_email: "Message to a student",
  };

  async function loadFailed() {
    try {
      const jobs = await request("/staff/api/deliveries/failed");
      $("failed").hidden = jobs.length === 0;
      $("failed-list").replaceChildren(...jobs.map((job) => {
        const li = document.createElement("li");
        const info = document.createElement("p");
        info.id = "failed-" + job.id;
        const what = node("strong", "", KIND_NAMES[job.kind] || job.kind.replace(/_/g, " "));
        const link = node("a", "", "booking " + (job.booking_uid || "(unknown)"));
        link.href = job.intake_url;
        info.append(what, " for ", link, " failed " + when(job.failed_at) + " after " + job.attempts + " attempt(s)" +
          (job.last_error ? ": " + job.last_error : "."));
        const button = node("button", "secondary small", "Retry");
        button.type = "button";
        button.setAttribute("aria-describedby", info.id);
        button.addEventListener("click", () => retryFailed(job, button));
        li.append(info, button);
        return li;
      }));
    } catch (err) {
      if (!(err instanceof Problem && err.status === 403)) showError(err);
      $("failed").hidden = true;
    }
  }

  async function retryFailed(job, button) {
    button.disabled = true;
    try {
      await request("/staff/api/deliveries/" + encodeURIComponent(job.id) + "/retry", {});
      $("failed-status").textContent = (KIND_NAMES[job.kind] || job.kind) + " queued again.";
      showError(null);
    } catch (err) { showError(err); }
    await loadFailed();
  }

  async function startList() {
    readFilters();
    $("filters").addEventListener("change", writeFilters);
    wireBroadcast();
    await loadCourses();
    readFilters(); // the course options exist now
    loadFailed();
    live("/staff/api/events", {
      ready: () => { loadList(); },
      reload: () => { loadList(); loadFailed(); },
      row: (row) => {
        const before = rows.get(row.staff_id);
        rows.set(row.staff_id, row);
        renderList();
        if (row.attention.includes("failed_delivery") && !(before && before.attention.includes("failed_delivery"))) loadFailed();
      },
    });
  }

  // --- one intake -------------------------------------------------------------------------------

  const staffId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  const api = "/staff/api/intakes/" + encodeURIComponent(staffId);
  let detail = null;

  function whoLabel(m) {
    if (m.role === "student") return "Student" + (m.to_staff ? " (to staff)" : "");
    if (m.role === "staff") return (m.author || "Staff") + " (staff)";
    return "Assistant";
  }

  function renderMessages(messages) {
    const list = $("messages");
    $("transcript-summary").textContent = "Transcript (" + messages.length + " message" + (messages.length === 1 ? "" : "s") + ")";
    if (list.children.length === messages.length) return; // keep scroll position and selection
    const before = list.children.length;
    list.replaceChildren(...messages.map((m) => {
      const li = node("li", "msg " + m.role);
      li.append(node("span", "who", whoLabel(m)), node("div", "bubble", m.text));
      return li;
    }));
    if (before && messages.length > before) {
      const last = messages[messages.length - 1];
      if (last.role === "student") announce("The student wrote: " + last.text);
    }
  }

  function renderOverview(d) {
    const view = d.overview;
    const box = $("summary");
    $("summary-title").textContent = view ? view.headline : "Summary";
    if (!view) {
      box.replaceChildren(node("p", "muted", "Nothing yet. What the student says appears here as the chat goes on."));
      $("sections").hidden = true;
      return;
    }
    const dl = node("dl", "summary");
    for (const field of view.fields) dl.append(node("dt", "", field.label), node("dd", "", field.value));
    if (view.flags.length) dl.append(node("dt", "", "Flags"), node("dd", "", view.flags.join(", ")));
    box.replaceChildren(dl);
    $("sections").hidden = view.sections.length === 0;
    $("section-list").replaceChildren(...view.sections.map((s) => {
      const li = node("li");
      li.append(node("strong", "", s.title + (s.section ? " › " + s.section : "")));
      if (s.why) li.append(node("span", "muted", " — " + s.why));
      li.append(node("span", "source", s.source));
      return li;
    }));
  }

  function renderDelivery(d) {
    const parts = [];
    if (d.summary_delivered_at) parts.push("Summary delivered " + when(d.summary_delivered_at) + ".");
    for (const job of d.pending_deliveries) {
      const what = KIND_NAMES[job.kind] || job.kind.replace(/_/g, " ");
      const state = job.state === "dead" ? "failed" : job.state;
      parts.push(what + ": " + state + (job.attempts ? " after " + job.attempts + " attempt(s)" : "") +
        (job.last_error ? " (" + job.last_error + ")" : "") + ".");
    }
    if (!parts.length && d.intake.summary) parts.push("Delivery is queued.");
    $("delivery").textContent = parts.join(" ");
  }

  const ACK_KINDS = ["escalated", "distress", "person"];

  function renderAttention(d) {
    const box = $("attention");
    box.hidden = d.attention.length === 0;
    $("attention-text").textContent = d.attention_labels.join(" · ");
    $("acknowledge").hidden = !d.attention.some((a) => ACK_KINDS.includes(a));
  }

  function renderDetail() {
    const view = detail.intake;
    $("title").textContent = view.student_name + " · " + detail.course_code;
    document.title = view.student_name + " · Intake";
    $("meta").textContent = detail.meeting_time + " · " + detail.status_label +
      (view.status === "active" ? " · question " + Math.min(view.turn + 1, view.max_turns) + " of at most " + view.max_turns : "") +
      (detail.acknowledged_by ? " · seen by " + detail.acknowledged_by : "") +
      (detail.student_rating ? " · the student found the chat " + (detail.student_rating === "up" ? "helpful" : "not helpful") : "");
    renderAttention(detail);
    renderOverview(detail);
    renderMessages(view.messages);
    renderDelivery(detail);
    const taken = view.taken_over;
    const button = $("takeover");
    button.textContent = taken ? "Hand back to the assistant" : "Take over";
    button.hidden = !taken && !detail.can_take_over;
    $("takeover-note").textContent = taken
      ? (detail.taken_over_by || "Staff") + " is answering: the assistant waits, and the student sees these messages with the name."
      : detail.can_take_over ? "Taking over pauses the assistant; you answer the student from here, live."
      : detail.take_over_refusal;
    $("staff-form").hidden = !taken;
    if (taken) $("transcript").open = true;
    $("prof-rate").hidden = !detail.summary;
    document.querySelectorAll("#prof-rate button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === detail.professor_rating)));
  }

  function show(next) {
    const wasAttention = detail ? detail.attention.length : null;
    detail = next;
    renderDetail();
    if (wasAttention !== null && detail.attention.length > wasAttention) announce("Needs attention: " + detail.attention_labels.join(", "));
  }

  // A student turn may hold the intake for a moment (409 while it is written): retry briefly.
  async function postWithRetry(url, body) {
    for (let i = 0; ; i++) {
      try { return await request(url, body); } catch (err) {
        const busy = err instanceof Problem && err.status === 409 && /already being written|changing too fast/.test(err.message);
        if (!busy || i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async function act(url, body) {
    try {
      show(await postWithRetry(url, body));
      showError(null);
      return true;
    } catch (err) { showError(err); return false; }
  }

  function wireDetail() {
    $("takeover").addEventListener("click", async () => {
      const taking = !detail.intake.taken_over;
      if (await act(api + "/takeover", { taken_over: taking }) && taking) $("staff-input").focus();
    });
    $("acknowledge").addEventListener("click", () => act(api + "/acknowledge", {}));
    $("staff-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("staff-input");
      const text = input.value.trim();
      if (!text) return;
      $("staff-send").disabled = true;
      if (await act(api + "/messages", { text })) input.value = "";
      $("staff-send").disabled = false;
    });
    document.querySelectorAll("#prof-rate button").forEach((button) => {
      button.addEventListener("click", () => act(api + "/rating", { value: button.dataset.value }));
    });
  }

  if (page === "list") {
    startList();
  } else if (page === "detail") {
    wireDetail();
    live(api + "/events", { intake: (next) => { show(next); showError(null); } });
  }
})();
