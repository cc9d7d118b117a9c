// The intake page's "Quality" section: the rubric's assessment of this intake and its model calls, from
// GET /staff/api/intakes/{staff_id}/assessments. Separate from staff.js; text only (never innerHTML).
(() => {
  'use strict';
  const root = document.getElementById('quality');
  if (!root) return;
  const staffId = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop() || '');
  const status = document.getElementById('quality-status');
  const KINDS = { interaction: 'Bot turn', multi_turn: 'Conversation', session_summary: 'Summary' };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function secs(value) {
    return value === null || value === undefined ? '–' : `${value.toFixed(2)} s`;
  }

  function table(head, rows) {
    const wrap = el('div', null, 'quality-table');
    const t = el('table');
    const tr = el('tr');
    head.forEach((h) => { const th = el('th', h); th.scope = 'col'; tr.appendChild(th); });
    t.appendChild(el('thead')).appendChild(tr);
    const body = t.appendChild(el('tbody'));
    rows.forEach((row) => {
      const line = body.appendChild(el('tr'));
      row.forEach((cell) => line.appendChild(el('td', cell)));
    });
    wrap.appendChild(t);
    return wrap;
  }

  function render(q) {
    root.replaceChildren();
    const means = Object.entries(q.means).map(([k, v]) => `${KINDS[k] || k} ${v.toFixed(2)}`).join(' · ');
    root.appendChild(el('p', q.rubric_version
      ? `Model ${q.model} · rubric ${q.rubric_version} · prompt ${q.prompt_version} · ${means}`
      : `Model ${q.model} · not assessed yet (it is once the final summary is written).`, 'muted small-text'));
    if (q.assessments.length) {
      root.appendChild(table(['What', 'Score', 'Verdict', 'Why'], q.assessments.map((a) => [
        a.kind === 'interaction' ? (a.turn === 0 ? 'Greeting' : `${KINDS[a.kind]} ${a.turn}`) : KINDS[a.kind] || a.kind,
        a.score.toFixed(2),
        a.category,
        a.errors.length ? a.errors.map((e) => `${e.key} (${e.severity}): ${e.message}`).join('; ') : a.explanation,
      ])));
    }
    root.appendChild(el('h3', `Model calls (${q.calls.length})`));
    if (q.calls.length) {
      root.appendChild(table(['Purpose', 'Status', 'Tokens in / out (cached)', 'First token', 'Total'], q.calls.map((c) => [
        c.purpose, c.status,
        `${c.prompt_tokens} / ${c.completion_tokens}${c.cached_tokens === null ? '' : ` (${c.cached_tokens})`}`,
        secs(c.first_token_s), secs(c.total_s),
      ])));
    }
  }

  async function load() {
    try {
      const response = await fetch(`/staff/api/intakes/${encodeURIComponent(staffId)}/assessments`, {
        credentials: 'same-origin', headers: { Accept: 'application/json' },
      });
      if (!response.ok) throw new Error(String(response.status));
      render(await response.json());
      status.textContent = '';
    } catch (err) {
      status.textContent = 'The quality figures could not be loaded.';
    }
  }

  document.getElementById('quality-refresh')?.addEventListener('click', load);
  load();
})();
