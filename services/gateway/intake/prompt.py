"""Prompt assembly: one fixed system prompt per course, the booking in the first turn, then an
append-only conversation.

On this CPU every prompt token costs ~15 ms, and mlx_lm.server reuses the longest cached prefix, so:

* the system prompt depends on the course only (course, tone, and 2–3 snippets of its materials chosen
  by a query built from the course itself), so every student of a course starts with the same tokens and
  the server's prompt cache holds one prefix per course (warmed at start-up and after a re-index);
  budget ~250 tokens;
* what is specific to one booking (the student's first name, their note, one snippet matching it) is
  the first ``user`` message (``booking_turn``), followed by the opening question as ``assistant``: a new
  student's first answer reads only their own part;
* each turn appends ``user`` (the student's words, clipped, plus a bracketed steer such as
  ``[Ask what they have already tried. ...]``) and ``assistant`` (the reply as shown), and the steer
  stays in the stored prompt, so every prompt is a strict extension of the previous one;
* context found later (the topic only becomes clear after a turn or two) is appended inside a steer,
  never by rewriting the system prompt.

The fine-tuning pipeline builds its training data with these same functions, so the served and the
trained format cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.coursepack import Course
from services.gateway.intake.models import Booking
from services.gateway.ports import Passage, PromptMessage

SYSTEM_BUDGET_TOKENS = 250
SNIPPET_TOKENS = 50
BOOKING_NOTE_TOKENS = 40
TONE_CHARS = 180
STUDENT_CHARS = (
    600  # what of one student message goes into the prompt (~150 tokens); the transcript keeps all
)
STOP = ("<|im_end|>", "<|im_start|>", "\nStudent:", "\nUser:", "\n[", "\n\n\n")


def estimate_tokens(text: str) -> int:
    """A conservative token estimate for English text (BPE vocabularies average ~4 chars per token)."""
    return max(1, round(len(text) / 3.5))


def trim(text: str, tokens: int) -> str:
    """Cut to about ``tokens`` tokens on a word boundary."""
    text = " ".join(text.split())
    limit = int(tokens * 3.5)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:-") + "…"


def _tone(course: Course) -> str:
    """The first sentence(s) of the tone notes that fit: the model cannot use more than that anyway."""
    out = ""
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(course.tone.notes.split())):
        if len(out) + len(sentence) > TONE_CHARS:
            break
        out = f"{out} {sentence}".strip()
    return out or trim(course.tone.notes, TONE_CHARS // 4)


def snippet(passage: Passage, tokens: int = SNIPPET_TOKENS) -> str:
    """A retrieved passage as one short line: title, then the first words of its text."""
    body = re.sub(r"^#+\s.*$", "", passage.text, flags=re.M)  # headings repeat the title
    body = re.sub(r"[*_`>#|]+", "", body)
    return trim(f"{passage.title}: {body}", tokens)


def system_prompt(course: Course, passages: Sequence[Passage], *, _fit: bool = True) -> str:
    """The fixed system prompt of a course: identical for all its students (passages: ``course_query``'s)."""
    lines = [
        f"You help a student get ready for office hours in {course.code} {course.title} "
        f"with {course.instructor_name}.",
        "Ask ONE short question per turn so the student explains their problem. "
        "Never solve it, never give answers or corrected text.",
        f"Tone: {_tone(course)}",
    ]
    if passages:
        lines.append("Course materials:")
        lines += [f"- {snippet(p)}" for p in passages]
    text = "\n".join(lines)
    while _fit and estimate_tokens(text) > SYSTEM_BUDGET_TOKENS and len(lines) > 3:
        lines.pop()  # drop the last snippet rather than blow the budget
        text = "\n".join(lines if lines[-1] != "Course materials:" else lines[:-1])
    return text


def course_query(course: Course) -> str:
    """What the course's own materials are searched with for its system prompt: the same for every student."""
    return " ".join([course.title, *(a.title for a in course.assignments), *(t.title for t in course.topics)])


def choose_passages(course: Course, passages: Sequence[Passage], k: int = 3) -> list[Passage]:
    """At most ``k`` passages from distinct sources that fit the system prompt budget, best first."""
    chosen: list[Passage] = []
    for passage in passages:
        if len(chosen) >= k or any(p.source == passage.source for p in chosen):
            continue
        if estimate_tokens(system_prompt(course, [*chosen, passage], _fit=False)) <= SYSTEM_BUDGET_TOKENS:
            chosen.append(passage)
    return chosen


def booking_turn(booking: Booking, passage: Passage | None = None) -> str:
    """The first user message: who booked and what their note says (plus one matching snippet), so the
    system prompt before it stays the course's own."""
    name = booking.student.name.split()[0] if booking.student.name.strip() else "the student"
    parts = [f"[Booking: {name} booked office hours."]
    if booking.notes.strip():
        parts.append(f'Their note: "{trim(booking.notes, BOOKING_NOTE_TOKENS)}"')
    text = " ".join(parts) + "]"
    # the same "[Material: ...]" form as a late snippet in a steer: the summary's evidence reads both
    return f"{text}\n[Material: {snippet(passage, 40)}]" if passage is not None else text


def student_turn(text: str, steer: str, material: str | None = None) -> str:
    """The user message actually sent: clipped student words, optional late context, the steer."""
    said = trim(text, STUDENT_CHARS // 4) if len(text) > STUDENT_CHARS else " ".join(text.split())
    parts = [said or "(no answer)"]
    if material:
        parts.append(f"[Material: {material}]")
    parts.append(steer)
    return "\n".join(parts)


_MATERIAL = re.compile(r"\[?Material: (.*?)\](?:\n|$)", re.S)


def hidden_context(prompt: Sequence[dict[str, str]]) -> str:
    """What the model was given that the student must not read back: the system prompt and every course
    snippet put into a user turn (the booking turn's, late context). The student's own words are not in
    it, so a question may quote them."""
    system = [m["content"] for m in prompt if m["role"] == "system"]
    snippets = [s for m in prompt if m["role"] == "user" for s in _MATERIAL.findall(m["content"])]
    return "\n".join([*system, *snippets])


def messages(prompt: Sequence[dict[str, str]]) -> list[PromptMessage]:
    """The stored OpenAI-shaped prompt as ``PromptMessage``s for the ``ChatModel`` port."""
    return [PromptMessage(m["role"], m["content"]) for m in prompt]


def is_extension(previous: Sequence[dict[str, str]], current: Sequence[dict[str, str]]) -> bool:
    """True when ``current`` starts with exactly ``previous``: the server's prompt cache can reuse it."""
    return len(current) >= len(previous) and list(current[: len(previous)]) == list(previous)


# Every sentence the model writes here is checked against the intake's evidence (names, dates, numbers,
# course terms), so the request only needs to say what to write; kept short, as each token costs ~15 ms.
SUMMARY_REQUEST = (
    "[Interview over. For the professor, write JSON with keys "
    '"issue_description" (2-4 sentences: the assignment and exactly where they are stuck, in their words), '
    '"student_attempts", "student_goal", "professor_prep_note" (what to look at or ask them to bring). '
    "Third person, only what the student said. JSON only.]"
)


def summary_retry(missing: Sequence[str]) -> str:
    """The one re-ask for fields that failed the evidence check."""
    keys = ", ".join(f'"{k}"' for k in missing)
    return f"[Some fields were unusable. Write JSON with only these keys: {keys}. Plain third-person sentences, only what the student said.]"
