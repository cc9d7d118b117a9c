// Staff pages: the intake list, and one intake live (polled every 2 s) with take-over and rating.
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

  async function request(url, body) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" }, cache: "no-store" }
      : { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() }, body: JSON.stringify(body) };
    const res = await fetch(url, init);
    if (res.status === 401) {
      location.assign("/staff/login?next=" + encodeURIComponent(location.pathname));
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

  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

  function badge(status) {
    const span = document.createElement("span");
    span.className = "badge " + status;
    span.textContent = status;
    return span;
  }

  // --- list -------------------------------------------------------------------------------------

  async function loadList() {
    try {
      const rows = await request("/staff/api/intakes");
      const body = $("rows");
      if (!rows.length) {
        const tr = document.createElement("tr");
        const td = cell("No intakes yet. They appear when students book office hours.");
        td.colSpan = 5;
        tr.append(td);
        body.replaceChildren(tr);
        return;
      }
      body.replaceChildren(...rows.map((row) => {
        const tr = document.createElement("tr");
        const link = document.createElement("a");
        link.href = "/staff/intakes/" + encodeURIComponent(row.staff_id);
        link.textContent = row.student_name || "(no name)";
        const student = document.createElement("td");
        student.append(link);
        if (row.taken_over) student.append(" (staff answering)");
        const status = document.createElement("td");
        status.append(badge(row.status));
        tr.append(cell(when(row.appointment_start)), cell(row.course), student, status, cell(row.turn + " / " + row.max_turns));
        return tr;
      }));
      showError(null);
    } catch (err) { showError(err); }
  }

  // --- failed deliveries (dead letters) on the list page ---------------------------------------

  const KIND_NAMES = {
    prepare: "Preparing the intake", invite_email: "Invitation email", summarize: "Writing the summary",
    summary_email: "Summary email", summary_calcom: "Summary on Cal.com",
  };

  async function loadFailed() {
    try {
      const jobs = await request("/staff/api/deliveries/failed");
      $("failed").hidden = jobs.length === 0;
      $("failed-list").replaceChildren(...jobs.map((job) => {
        const li = document.createElement("li");
        const info = document.createElement("p");
        info.id = "failed-" + job.id;
        const what = document.createElement("strong");
        what.textContent = KIND_NAMES[job.kind] || job.kind.replace(/_/g, " ");
        const link = document.createElement("a");
        link.href = job.intake_url;
        link.textContent = "booking " + (job.booking_uid || "(unknown)");
        info.append(what, " for ", link, " failed " + when(job.failed_at) + " after " + job.attempts + " attempt(s)" +
          (job.last_error ? ": " + job.last_error : "."));
        const button = document.createElement("button");
        button.type = "button";
        button.className = "secondary small";
        button.textContent = "Retry";
        button.setAttribute("aria-describedby", info.id);
        button.addEventListener("click", () => retryFailed(job, button));
        li.append(info, button);
        return li;
      }));
    } catch (err) { showError(err); }
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

  // --- detail -----------------------------------------------------------------------------------

  const token = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  const api = "/staff/api/intakes/" + encodeURIComponent(token);
  let detail = null;

  function renderMessages(messages) {
    const list = $("messages");
    if (list.children.length === messages.length) return; // keep scroll position and selection
    list.replaceChildren(...messages.map((m) => {
      const li = document.createElement("li");
      li.className = "msg " + m.role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = m.role === "student" ? "Student" : m.role === "staff" ? "Staff" : "Assistant";
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = m.text;
      li.append(who, bubble);
      return li;
    }));
  }

  const SUMMARY_FIELDS = [
    ["status", "Status"], ["topic", "Topic"], ["assignment", "Assignment"], ["request_type", "Request"],
    ["issue_description", "Issue"], ["student_attempts", "Tried so far"], ["student_goal", "Goal"],
    ["difficulty", "Difficulty (1–5)"], ["urgency", "Urgency"], ["professor_prep_note", "Prep note"],
  ];

  function renderSummary(summary) {
    const box = $("summary");
    if (!summary) return;
    const dl = document.createElement("dl");
    dl.className = "summary";
    for (const [key, label] of SUMMARY_FIELDS) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      const value = summary[key];
      dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
      dl.append(dt, dd);
    }
    if (summary.suggested_materials && summary.suggested_materials.length) {
      const dt = document.createElement("dt");
      dt.textContent = "Materials";
      const dd = document.createElement("dd");
      dd.textContent = summary.suggested_materials.map((m) => m.title + (m.section ? " › " + m.section : "") + " (" + m.source + ")").join("; ");
      dl.append(dt, dd);
    }
    const flags = summary.flags || {};
    const raised = Object.keys(flags).filter((k) => flags[k]);
    if (raised.length) {
      const dt = document.createElement("dt");
      dt.textContent = "Flags";
      const dd = document.createElement("dd");
      dd.textContent = raised.join(", ").replace(/_/g, " ");
      dl.append(dt, dd);
    }
    box.replaceChildren(dl);
  }

  function renderDelivery(d) {
    const parts = [];
    if (d.summary_delivered_at) parts.push("Summary delivered " + when(d.summary_delivered_at) + ".");
    for (const job of d.pending_deliveries) {
      const what = job.kind.replace(/_/g, " ");
      parts.push(what + ": " + job.state + (job.attempts ? " after " + job.attempts + " attempt(s)" : "") +
        (job.last_error ? " (" + job.last_error + ")" : "") + ".");
    }
    if (!parts.length && d.intake.summary) parts.push("Delivery is queued.");
    $("delivery").textContent = parts.join(" ");
  }

  function renderDetail() {
    const view = detail.intake;
    $("title").textContent = view.student_name + " · " + view.course;
    document.title = view.student_name + " · Intake";
    $("meta").textContent = when(view.appointment_start) + " · status " + view.status + " · turn " + view.turn + " of at most " + view.max_turns +
      (detail.student_rating ? " · student found the chat " + (detail.student_rating === "up" ? "helpful" : "not helpful") : "");
    renderMessages(view.messages);
    renderSummary(detail.summary || view.summary);
    renderDelivery(detail);
    const open = !["complete", "partial", "escalated", "cancelled"].includes(view.status);
    $("takeover").textContent = detail.intake.taken_over ? "Hand back to the assistant" : "Take over";
    $("takeover").hidden = !open;
    $("takeover-note").textContent = detail.intake.taken_over
      ? "You are answering: the assistant stays quiet and the student sees your messages."
      : open ? "Taking over stops the assistant; you answer the student from here." : "";
    $("staff-form").hidden = !(open && detail.intake.taken_over);
    $("prof-rate").hidden = !view.summary;
    document.querySelectorAll("#prof-rate button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === detail.professor_rating)));
  }

  async function refresh() {
    try {
      detail = await request(api);
      renderDetail();
      showError(null);
    } catch (err) { showError(err); }
  }

  // A student turn may hold the intake for a moment (409): retry briefly instead of failing.
  async function postWithRetry(url, body) {
    for (let i = 0; ; i++) {
      try { return await request(url, body); } catch (err) {
        if (!(err instanceof Problem) || err.status !== 409 || i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  function wireDetail() {
    $("takeover").addEventListener("click", async () => {
      try {
        detail = await postWithRetry(api + "/takeover", { taken_over: !detail.intake.taken_over });
        renderDetail();
        if (detail.intake.taken_over) $("staff-input").focus();
      } catch (err) { showError(err); }
    });
    $("staff-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("staff-input");
      const text = input.value.trim();
      if (!text) return;
      $("staff-send").disabled = true;
      try {
        detail = await postWithRetry(api + "/messages", { text });
        input.value = "";
        renderDetail();
      } catch (err) { showError(err); } finally { $("staff-send").disabled = false; }
    });
    document.querySelectorAll("#prof-rate button").forEach((button) => {
      button.addEventListener("click", async () => {
        try {
          detail = await postWithRetry(api + "/rating", { value: button.dataset.value });
          renderDetail();
        } catch (err) { showError(err); }
      });
    });
  }

  if (page === "list") {
    loadList();
    loadFailed();
    setInterval(() => { loadList(); loadFailed(); }, 10000);
  } else if (page === "detail") {
    wireDetail();
    refresh();
    setInterval(refresh, 2000);
  }
})();
