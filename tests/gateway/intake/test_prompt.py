"""Prompt assembly: a short fixed system prompt, clipped student turns, the append-only property."""

from __future__ import annotations

import re

import msgspec

from services.coursepack import Tone
from services.gateway.intake import prompt
from services.gateway.intake.interview import Interviewer
from services.gateway.intake.models import InterviewState, Person
from services.gateway.ports import Passage
from services.settings import Settings
from tests.gateway.intake.scripted import TODAY, ListRetriever, make_booking, make_course, make_passages


def test_system_prompt_fits_the_token_budget_even_with_long_material() -> None:
    """Long tone notes and long passages are trimmed so the fixed prompt stays within ~250 tokens."""
    course = msgspec.structs.replace(make_course(), tone=Tone(notes="Be warm and kind. " * 60))
    long = [Passage(text="word " * 800, source=f"notes/{i}.md", title=f"Long note {i}") for i in range(5)]
    chosen = prompt.choose_passages(course, long)
    text = prompt.system_prompt(course, chosen)
    assert prompt.estimate_tokens(text) <= prompt.SYSTEM_BUDGET_TOKENS
    assert 1 <= len(chosen) <= 3


def test_system_prompt_names_course_instructor_and_materials() -> None:
    """The model is grounded: course code, instructor, tone and the chosen snippets are in the prompt."""
    course = make_course()
    chosen = prompt.choose_passages(course, make_passages())
    text = prompt.system_prompt(course, chosen)
    assert "STAT 150" in text and "Dr. Lee Okafor" in text and "Friendly and calm" in text
    assert "Problem Set 3: Hypothesis Tests" in text
    assert "Never solve it" in text


def test_choose_passages_keeps_distinct_sources() -> None:
    """Two chunks of the same file are one source: the budget goes to different materials."""
    dup = [
        Passage(text="a b c", source="x.md", title="X"),
        Passage(text="d e f", source="x.md", title="X"),
        Passage(text="g h", source="y.md", title="Y"),
    ]
    assert [p.source for p in prompt.choose_passages(make_course(), dup)] == ["x.md", "y.md"]


def test_snippet_drops_markdown_and_is_about_fifty_tokens() -> None:
    """Headings and markup are removed; the text is cut on a word boundary near the token budget."""
    p = Passage(text="# Title\n\n**Bold** " + "alpha " * 100, source="n.md", title="Note")
    s = prompt.snippet(p)
    assert s.startswith("Note: Bold alpha") and "#" not in s and "*" not in s
    assert prompt.estimate_tokens(s) <= prompt.SNIPPET_TOKENS + 2


def test_student_turn_clips_long_messages_and_keeps_the_steer() -> None:
    """A rambling 2,000-character message costs at most ~150 prompt tokens; the steer is always last."""
    text = prompt.student_turn("blah " * 400, "[Ask what they tried.]", material="P-values: a p-value is")
    assert len(text) < prompt.STUDENT_CHARS + 100
    assert text.endswith("[Ask what they tried.]") and "[Material: P-values" in text


def test_is_extension() -> None:
    """The cache property: the next prompt starts with exactly the previous one."""
    a = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hi"}]
    assert prompt.is_extension(a, [*a, {"role": "user", "content": "x"}])
    assert not prompt.is_extension(a, [{"role": "system", "content": "s2"}, *a[1:]])


async def test_two_students_of_a_course_share_the_system_prompt_and_their_booking_comes_first() -> None:
    """The server caches one prefix per course: the system prompt is the same for two bookings with
    different students and notes; each booking's name and note are in the first user turn instead."""
    course = make_course()
    iv = Interviewer(None, ListRetriever(make_passages()), Settings(), today=lambda c: TODAY)  # type: ignore[arg-type]
    first, second = InterviewState(), InterviewState()
    mina = make_booking("need help with ps3 p-values")
    omar = msgspec.structs.replace(
        make_booking("regression slope question"), student=Person("Omar Diaz", "omar@example.edu"), uid="bk-2"
    )
    await iv.prepare(first, course, mina)
    await iv.prepare(second, course, omar)
    assert first.prompt[0] == second.prompt[0] and first.prompt[0]["role"] == "system"
    assert "Mina" not in first.prompt[0]["content"] and "ps3 p-values" not in first.prompt[0]["content"]
    assert first.prompt[1]["role"] == second.prompt[1]["role"] == "user"
    assert (
        "Mina" in first.prompt[1]["content"] and "need help with ps3 p-values" in first.prompt[1]["content"]
    )
    assert "Omar" in second.prompt[1]["content"] and "regression slope" in second.prompt[1]["content"]


def test_the_booking_turn_carries_its_snippet_as_material_the_evidence_reads() -> None:
    """The note's snippet is written ``[Material: ...]`` like a late snippet, so the summary's evidence
    check (which reads those) knows the words the model may repeat from it."""
    passage = make_passages()[1]
    text = prompt.booking_turn(make_booking("p-values confuse me"), passage)
    assert text.startswith("[Booking: Mina booked office hours.") and '"p-values confuse me"' in text
    assert re.findall(r"\[Material: ([^\]]*)\]", text) == [prompt.snippet(passage, 40)]
    assert "[Material:" not in prompt.booking_turn(make_booking("p-values confuse me"))
