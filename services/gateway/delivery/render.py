"""The summary as a professor reads it: plain text, HTML, and the marked block in the Cal.com notes.

Pure functions, no I/O. The Cal.com block is delimited by HTML comments so a re-delivery finds and
replaces its own earlier block and never touches the student's notes around it.
"""

from __future__ import annotations

import html
import re

from services.gateway.intake.models import Summary

BLOCK_START = "<!-- office-hours-intake:start -->"
BLOCK_END = "<!-- office-hours-intake:end -->"
_BLOCK = re.compile(re.escape(BLOCK_START) + r".*?" + re.escape(BLOCK_END), re.DOTALL)

_STATUS_TITLE = {
    "complete": "Intake summary",
    "partial": "Partial intake (the student did not finish)",
    "no_intake": "No intake (the student did not start the chat)",
    "escalated": "Intake escalated: please read first",
}


def headline(summary: Summary) -> str:
    return f"{_STATUS_TITLE[summary.status]} — {summary.course}, {summary.student.name or 'student'}"


def _fields(summary: Summary) -> list[tuple[str, str]]:
    rows = [
        ("Appointment", summary.appointment_start),
        ("Topic", summary.topic),
        ("Assignment", summary.assignment or "—"),
        ("Request", summary.request_type.replace("_", " ")),
        ("Issue", summary.issue_description),
        ("Already tried", summary.student_attempts),
        ("Goal for the meeting", summary.student_goal),
        ("Difficulty", f"{summary.difficulty}/5"),
        ("Urgency", summary.urgency),
        ("Prepare", summary.professor_prep_note),
    ]
    flags = [name.replace("_", " ") for name, on in _flag_items(summary) if on]
    if flags:
        rows.append(("Flags", ", ".join(flags)))
    return rows


def _flag_items(summary: Summary) -> list[tuple[str, bool]]:
    f = summary.flags
    return [
        ("distress", f.distress),
        ("off_topic", f.off_topic),
        ("escalated_to_human", f.escalated_to_human),
    ]


def summary_text(summary: Summary) -> str:
    lines = [headline(summary), ""]
    lines += [f"{label}: {value}" for label, value in _fields(summary) if value]
    if summary.suggested_materials:
        lines += ["", "Suggested materials:"]
        lines += [
            f"- {m.title}{f' > {m.section}' if m.section else ''} ({m.source}): {m.why}"
            for m in summary.suggested_materials
        ]
    lines += ["", f"Turns: {summary.turns}"]
    if summary.transcript_url:
        lines.append(f"Transcript (staff): {summary.transcript_url}")
    return "\n".join(lines) + "\n"


def summary_html(summary: Summary) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th align='left' valign='top' style='padding:4px 12px 4px 0'>{esc(label)}</th>"
        f"<td style='padding:4px 0'>{esc(value)}</td></tr>"
        for label, value in _fields(summary)
        if value
    )
    materials = "".join(
        f"<li><b>{esc(m.title)}</b>{f' › {esc(m.section)}' if m.section else ''} <code>{esc(m.source)}</code>"
        f" — {esc(m.why)}</li>"
        for m in summary.suggested_materials
    )
    parts = [
        "<!doctype html><html><body style='font-family:sans-serif;max-width:640px'>",
        f"<h2>{esc(headline(summary))}</h2>",
        f"<table>{rows}</table>",
        f"<h3>Suggested materials</h3><ul>{materials}</ul>" if materials else "",
        f"<p>Turns: {summary.turns}</p>",
        f"<p><a href='{esc(summary.transcript_url)}'>Open the transcript</a></p>"
        if summary.transcript_url
        else "",
        "<p style='color:#666'>The full summary is attached as summary.json.</p></body></html>",
    ]
    return "".join(parts)


def calcom_block(summary: Summary) -> str:
    return f"{BLOCK_START}\n{summary_text(summary).strip()}\n{BLOCK_END}"


def remove_block(current: str | None) -> str:
    """The booking's notes without our block (after a cancellation); the student's own notes stay."""
    return _BLOCK.sub("", current or "").strip()


def merge_description(current: str | None, summary: Summary) -> str:
    """The booking description with our block replaced (or appended once); the rest is left as it was."""
    block = calcom_block(summary)
    text = current or ""
    if _BLOCK.search(text):
        return _BLOCK.sub(lambda _: block, text, count=1)
    return f"{text.rstrip()}\n\n{block}" if text.strip() else block
