// The operator's privacy page: export a student's data as a JSON download, or delete it after a confirmation.
"use strict";

(() => {
  const form = document.getElementById("privacy-form");
  const result = document.getElementById("privacy-result");
  const csrf = () => (document.cookie.match(/(?:^|;\s*)staff_csrf=([^;]+)/) || [])[1] || "";

  async function call(action, email) {
    const res = await fetch("/staff/api/privacy/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify({ email }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.detail || "The server answered with error " + res.status + ".");
    return body;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "export";
    const email = form.elements.email.value.trim();
    if (action === "delete" && !window.confirm("Delete everything held about " + email + "? This cannot be undone.")) return;
    result.textContent = "Working…";
    try {
      const body = await call(action, email);
      if (action === "export") {
        const blob = new Blob([JSON.stringify(body, null, 2)], { type: "application/json" });
        const link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = "student-data.json";
        link.click();
        result.textContent = "Exported " + body.intakes.length + " intake(s).";
      } else {
        result.textContent = "Deleted " + body.intakes + " intake(s), " + body.redis_keys + " stored item(s), "
          + body.redis_entries + " list entries and " + body.mail_files + " mail file(s).";
      }
    } catch (err) {
      result.textContent = err.message;
    }
  });
})();
