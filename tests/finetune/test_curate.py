"""Curation catches planted bad examples, each with the check that names the problem."""

from __future__ import annotations

import msgspec

from finetune.conversation import Conversation
from finetune.curate import check_conversation, curate, foreign_titles
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake.models import ChatMessage
from services.gateway.intake.wording import RECAP_CUE


def _good(conversations: list[Conversation]) -> Conversation:
    return next(c for c in conversations if c.status == "complete" and not check_conversation(c))


def _copy(conv: Conversation, **changes: object) -> Conversation:
    return msgspec.convert(msgspec.to_builtins(msgspec.structs.replace(conv, **changes)), Conversation)


def _checks(conv: Conversation) -> set[str]:
    return {reason.split(":")[0] for reason in check_conversation(conv)}


def test_generated_conversations_mostly_pass(conversations: list[Conversation]) -> None:
    """The generator's own output is mostly accepted (a few facts mismatches are expected)."""
    _, report = curate(conversations)
    assert report.accepted >= len(conversations) // 2
    assert report.accepted + report.rejected == len(conversations)


def test_two_questions_in_one_turn_rejected(conversations: list[Conversation]) -> None:
    """An assistant turn asking two questions fails one_question."""
    conv = _good(conversations)
    messages = list(conv.messages)
    messages[2] = ChatMessage("assistant", "What did you try? And when is it due?")
    assert "one_question" in _checks(_copy(conv, messages=messages))


def test_too_few_turns_rejected(conversations: list[Conversation]) -> None:
    """A completed interview with 3 student turns fails turns."""
    conv = _good(conversations)
    assert "turns" in _checks(_copy(conv, messages=conv.messages[:6] + conv.messages[-1:]))


def test_homework_answer_rejected(conversations: list[Conversation]) -> None:
    """An assistant turn that writes the student's work fails no_homework."""
    conv = _good(conversations)
    messages = list(conv.messages)
    messages[2] = ChatMessage(
        "assistant", "Here is a corrected version: 'Technology makes people lonely.' Better?"
    )
    assert "no_homework" in _checks(_copy(conv, messages=messages))


def test_invalid_summary_rejected(conversations: list[Conversation]) -> None:
    """A summary outside schema v1 (difficulty 9) fails summary_valid; a broken draft too."""
    conv = _good(conversations)
    assert "summary_valid" in _checks(_copy(conv, summary={**(conv.summary or {}), "difficulty": 9}))
    assert "summary_valid" in _checks(_copy(conv, summary_reply="Sure! The student is stuck."))


def test_summary_contradicting_persona_rejected(conversations: list[Conversation]) -> None:
    """A summary naming another assignment or the wrong status fails summary_consistent."""
    conv = _good(conversations)
    wrong = "zzz-not-this-one" if conv.persona.truth.assignment else "essay-1"
    assert "summary_consistent" in _checks(_copy(conv, summary={**(conv.summary or {}), "assignment": wrong}))
    assert "summary_consistent" in _checks(
        _copy(conv, summary={**(conv.summary or {}), "status": "escalated"})
    )


def test_no_target_rejected(conversations: list[Conversation]) -> None:
    """A conversation whose composed replies were all refused has nothing to learn and is rejected."""
    conv = _good(conversations)
    assert "targets" in _checks(_copy(conv, targets=[], replaced=2))


def test_duplicates_rejected(conversations: list[Conversation]) -> None:
    """The second identical conversation is rejected as a duplicate, with its id in the report."""
    conv = _good(conversations)
    twin = _copy(conv, id="twin")
    accepted, report = curate([conv, twin])
    assert [c.id for c in accepted] == [conv.id]
    assert report.rejects[0].id == "twin" and report.rejects[0].reasons[0].startswith("duplicate")


def test_another_courses_title_rejected(conversations: list[Conversation], catalog: Catalog) -> None:
    """A question naming a title from another course (here the held-out course's) fails own_course; the
    same conversation with its own course's titles passes."""
    conv = _good(conversations)
    slug = conv.persona.course_slug
    titles = foreign_titles([*catalog.courses.values(), _course_of(conv)])[slug]
    stranger = catalog.courses["phil210"].assignments[0].title
    assert stranger in titles
    messages = list(conv.messages)
    messages[2] = ChatMessage("assistant", f"Which part of {stranger} is giving you trouble?")
    assert not check_conversation(conv, foreign={slug: titles})
    reasons = check_conversation(_copy(conv, messages=messages), foreign={slug: titles})
    assert [r for r in reasons if r.startswith("own_course")]


def test_recap_is_not_held_to_the_question_rules(conversations: list[Conversation]) -> None:
    """The recap (a template quoting the student, question marks and all) is not a model turn: a long
    recap with the student's own question in it does not fail one_question or no_homework."""
    conv = _good(conversations)
    messages = list(conv.messages)
    recap = next(i for i, m in enumerate(messages) if RECAP_CUE in m.text)
    quoted = " ".join(["the hard part: why does my loop never stop? and what is a loop?"] * 6)
    messages[recap] = ChatMessage(
        "assistant", f"Here's what I'll pass on: {quoted}. {RECAP_CUE}, or is there something to fix?"
    )
    assert not _checks(_copy(conv, messages=messages)) & {"one_question", "no_homework"}


def _course_of(conv: Conversation) -> Course:
    from finetune.personas import training_catalog
    from services.settings import REPO_ROOT

    return training_catalog(load_catalog(REPO_ROOT / "corpus")).courses[conv.persona.course_slug]
