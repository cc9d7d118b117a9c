// The analytics page: reads /staff/api/analytics and fills the tables; the charts are server-drawn SVGs.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pct = (x) => (x === null || x === undefined ? "–" : Math.round(x * 100) + "%");
  const num = (x) => (x === null || x === undefined ? "–" : String(Math.round(x * 10) / 10));

  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (res.status === 401) {
      location.assign("/staff/login?next=" + encodeURIComponent(location.pathname));
      throw new Error("Please log in again.");
    }
    if (!res.ok) {
      let detail = "";
      try { detail = (await res.json()).detail || ""; } catch (_) {}
      throw new Error(detail || "The figures could not be loaded (" + res.status + ").");
    }
    return res.json();
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function rows(tbody, items, render, empty) {
    const body = $(tbody).tBodies ? $(tbody).tBodies[0] : $(tbody);
    if (!items.length) {
      const tr = document.createElement("tr");
      const td = cell(empty);
      td.colSpan = 9;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...items.map((item) => { const tr = document.createElement("tr"); tr.append(...render(item)); return tr; }));
  }

  function hostRow(h, threshold) {
    const name = document.createElement("td");
    const email = document.createElement("span");
    email.className = "host-email";
    email.textContent = h.email;
    name.append(email, " ");
    const badge = document.createElement("span");
    badge.className = h.flagged ? "badge flag" : "badge ok";
    badge.textContent = h.flagged ? "Flagged: over " + pct(threshold) : "OK";
    name.append(badge);
    name.dataset.flagged = h.flagged ? "yes" : "no";
    return [name, cell(h.bookings, "num"), cell(h.reschedules_by_host, "num"), cell(h.reschedules_by_attendee, "num"),
      cell(pct(h.reschedule_rate), "num"), cell(h.cancellations, "num"), cell(h.no_shows, "num")];
  }

  function tile(label, value, note, off) {
    const div = document.createElement("div");
    if (off) div.className = "off";
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd"); dd.textContent = value;
    if (note) { const small = document.createElement("small"); small.textContent = note; dd.append(small); }
    div.append(dt, dd);
    return div;
  }

  function tiles(i, data) {
    const abandonOff = i.abandon_rate !== null && i.abandon_rate >= data.abandon_target;
    const usefulOff = i.useful_rate !== null && i.useful_rate < data.useful_target;
    $("tiles").replaceChildren(
      tile("Started", i.started, i.invited + " invited"),
      tile("Completed", i.completed, pct(i.completion_rate) + " of started"),
      tile("Abandoned", pct(i.abandon_rate), i.abandoned + " · target under " + pct(data.abandon_target), abandonOff),
      tile("Median turns", num(i.median_turns), "to complete"),
      tile("Median minutes", num(i.median_minutes), "to complete"),
      tile("Escalations", i.escalations, i.taken_over + " taken over"),
      tile("Professors: useful", pct(i.useful_rate), i.useful + " of " + (i.useful + i.not_useful) + " · target " + pct(data.useful_target), usefulOff),
      tile("Students", "👍 " + i.thumbs_up + " · 👎 " + i.thumbs_down, "thumbs"),
    );
  }

  function stuck(groups) {
    const list = $("stuck");
    if (!groups.length) {
      const li = document.createElement("li");
      li.textContent = "No section has two or more students this week.";
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...groups.map((g) => {
      const li = document.createElement("li");
      const strong = document.createElement("strong");
      strong.textContent = g.students + " students this week on the same section";
      li.append(strong, g.section_title + (g.assignment_title ? " · " + g.assignment_title : ""));
      return li;
    }));
  }

  function chart(name, query, alt) {
    const img = $("chart-" + name);
    img.alt = alt;
    img.src = "/staff/api/analytics/charts/" + name + "?" + query;
  }

  function compare(items) { return [cell(items.title), cell(items.this_week, "num"), cell(items.last_week, "num")]; }

  async function load() {
    const course = $("course").value;
    const weeks = $("weeks").value;
    const query = new URLSearchParams({ course, weeks }).toString();
    history.replaceState(null, "", "?" + query);
    try {
      const data = await getJSON("/staff/api/analytics?" + query);
      $("error").hidden = true;
      $("title").textContent = data.course_code + " analytics";
      $("period").textContent = "Meetings in the weeks from " + data.from_week + " to this week (" + data.this_week + ").";
      const flagged = data.hosts.filter((h) => h.flagged).length;
      $("hosts-note").textContent = "A host is flagged when they reschedule more than " + pct(data.threshold) +
        " of their bookings themselves (" + flagged + " flagged). Moves by students do not count against them.";
      rows("hosts", data.hosts, (h) => hostRow(h, data.threshold), "No bookings in this period.");
      tiles(data.intakes, data);
      rows("weekly", data.weekly.slice().reverse(), (w) => [cell(w.week), cell(w.bookings, "num"), cell(w.started, "num"),
        cell(w.completed, "num"), cell(w.abandoned, "num"), cell(w.no_shows, "num")], "No weeks.");
      rows("topics", data.topics, compare, "No summaries this week or last.");
      rows("assignments", data.assignments.slice(0, 10), compare, "No assignments named this week or last.");
      rows("sections", data.sections.slice(0, 10), compare, "No sections matched this week or last.");
      stuck(data.stuck);
      chart("hosts", query, "Bar chart of each host's reschedule rate with the " + pct(data.threshold) + " line; " + flagged + " flagged. The numbers are in the hosts table below.");
      chart("intakes", query, "Bar chart of intakes completed and abandoned per week. The numbers are in the weekly table below.");
      chart("topics", query, "Bar chart of topics this week and last week. The numbers are in the topics table below.");
    } catch (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
    }
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    try {
      const courses = await getJSON("/staff/api/analytics/courses");
      $("course").replaceChildren(...courses.map((c) => {
        const option = document.createElement("option");
        option.value = c.slug;
        option.textContent = c.code + " · " + c.title;
        return option;
      }));
      if (params.get("course")) $("course").value = params.get("course");
      if (params.get("weeks")) $("weeks").value = params.get("weeks");
      if (!courses.length) throw new Error("You do not staff any course.");
    } catch (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
      return;
    }
    $("course").addEventListener("change", load);
    $("weeks").addEventListener("change", load);
    $("choose").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    load();
  }

  start();
})();
