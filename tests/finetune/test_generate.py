"""Generated conversations: the serving format, the interview's shape, and a valid summary at the end."""

from __future__ import annotations

import json

import msgspec

from finetune.conversation import Conversation
from finetune.curate import _own_course, foreign_titles
from finetune.personas import HELD_OUT
from finetune.skeletons import load_skeletons
from finetune.split import examples_of
from services.coursepack import Catalog, Course
from services.gateway.intake import guardrails
from services.gateway.intake.models import Summary
from services.gateway.intake.summary import DraftText
from services.gateway.intake.wording import RECAP_CUE


def test_student_turns_within_limits(conversations: list[Conversation]) -> None:
    """Finished interviews have 5-8 student turns; escalated ones stop at the distress message."""
    for conv in conversations:
        turns = sum(1 for m in conv.messages if m.role == "student")
        if conv.status == "escalated":
            last = [m.text for m in conv.messages if m.role == "student"][-1]
            assert conv.persona.truth.distress and guardrails.screen(last).kind == "distress"
        else:
            assert conv.status == "complete" and 5 <= turns <= 8, (conv.id, turns)


def test_one_question_per_assistant_turn(conversations: list[Conversation]) -> None:
    """Every assistant message that continues the interview asks exactly one question (the recap quotes
    the student back to them, their own question marks included, so it only has to end in one)."""
    for conv in conversations:
        replies = [m.text for m in conv.messages if m.role == "assistant"][:-1]
        asks = [r for r in replies if RECAP_CUE not in r]
        assert asks and all(r.count("?") == 1 for r in asks), conv.id
        assert all(r.endswith("or is there something to fix?") for r in replies if RECAP_CUE in r)


def test_targets_are_model_replies_in_the_stored_prompt(conversations: list[Conversation]) -> None:
    """Targets point at assistant messages of the append-only prompt that starts with the system prompt;
    the user messages carry the gateway's bracketed steering notes."""
    for conv in conversations:
        assert conv.prompt[0]["role"] == "system"
        assert conv.targets and all(conv.prompt[i]["role"] == "assistant" for i in conv.targets)
        assert all(
            conv.prompt[i - 1]["role"] == "user" and "[" in conv.prompt[i - 1]["content"]
            for i in conv.targets
        )


def test_summary_is_valid_and_draft_is_json(conversations: list[Conversation]) -> None:
    """Each conversation ends with a summary v1 and (unless escalated) the draft JSON the model writes."""
    for conv in conversations:
        msgspec.convert(conv.summary, Summary)
        if conv.status != "escalated":
            draft = msgspec.convert(json.loads(conv.summary_reply), DraftText)
            assert draft.issue_description and draft.professor_prep_note
            assert conv.summary_prompt[-1]["role"] == "user" and conv.summary_prompt[0] == conv.prompt[0]


def test_one_example_marks_every_model_call(conversations: list[Conversation]) -> None:
    """A conversation is one MLX example: the summary-drafting prompt (which extends every interview
    prompt) ending in the draft, with every reply the gateway asked the model for marked to learn, and
    nothing the gateway's own code wrote (greeting, guardrail and closing templates)."""
    for conv in conversations:
        examples = examples_of(conv)
        learned = [e.messages[i]["content"] for e in examples for i in e.train_on]
        expected = [conv.prompt[i]["content"] for i in conv.targets]
        assert learned == [*expected, conv.summary_reply] if conv.summary_reply else learned == expected
        assert all(e.messages[i]["role"] == "assistant" for e in examples for i in e.train_on)
        assert all(1 not in e.train_on for e in examples)  # the greeting is a template
        if conv.status == "complete":
            assert len(examples) == 1  # the drafting prompt extends every interview prompt
            assert examples[0].messages[: len(conv.prompt)] == conv.prompt


def test_questions_name_the_students_work_once_known(
    conversations: list[Conversation], training: Catalog
) -> None:
    """Ideal questions usually name the assignment, topic or matched section the policy has identified."""
    named = total = 0
    for conv in conversations:
        course = training.courses[conv.persona.course_slug]
        words = _title_words(course, conv)
        for i in conv.targets[:-1] if conv.summary_reply else conv.targets:
            total += 1
            named += any(word in conv.prompt[i]["content"].lower() for word in words)
    assert total and named / total >= 0.5, named / total


def _title_words(course: Course, conv: Conversation) -> list[str]:
    from finetune.compose import short_title

    facts = conv.facts
    items = [
        x
        for x in (course.assignment(facts.get("assignment") or ""), course.topic(facts.get("topic") or ""))
        if x
    ]
    out = [short_title(x.title).lower() for x in items] + [x.title.lower() for x in items]
    section = facts.get("section") or {}
    return out + [str(v).lower() for k, v in section.items() if k in {"title", "heading"} and v]


def test_conversations_span_many_courses_never_the_held_out_one(
    conversations: list[Conversation], training: Catalog
) -> None:
    """Training conversations come from the course packs and the synthetic skeletons (one persona per
    course round-robin), never from a held-out evaluation course."""
    slugs = {c.persona.course_slug for c in conversations}
    assert not slugs & HELD_OUT
    assert slugs == set(training.courses)
    skeletons = {s.slug for s in load_skeletons()}
    assert len(slugs & skeletons) >= 8


def test_no_question_names_another_courses_titles(
    conversations: list[Conversation], catalog: Catalog, training: Catalog
) -> None:
    """No interviewer turn or draft names an assignment or topic title of another course (the sample
    courses' vocabulary must not become the model's habit), held-out course included."""
    foreign = foreign_titles({**catalog.courses, **training.courses}.values())
    flagged = [c.id for c in conversations if _own_course(c, foreign[c.persona.course_slug])]
    assert len(flagged) <= len(conversations) // 10, flagged


def test_template_turns_are_answered(conversations: list[Conversation]) -> None:
    """Every interview that is not escalated ends with the recap, answered by a confirmation or a
    correction, and a course's must-ask question (q:<id>) is answered by the student's next message."""
    finished = [c for c in conversations if c.status == "complete"]
    assert finished and all(c.asked[-1] == "recap" for c in finished)
    for conv in finished:
        student = [m.text for m in conv.messages if m.role == "student"]
        assert student[-1].strip()
        assert conv.facts["recap_confirmed"] or conv.facts["corrected"], conv.id
    must_ask = [c for c in conversations if any(s.startswith("q:") for s in c.asked)]
    assert must_ask, "no conversation met a course question"
    # a homework or injection line may land on that turn (the gateway answers it and moves on)
    answered = [c for c in must_ask if any(s[2:] in c.facts["custom"] for s in c.asked if s.startswith("q:"))]
    assert len(answered) >= len(must_ask) * 2 // 3, [c.id for c in must_ask if c not in answered]


def test_generation_is_reproducible(conversations: list[Conversation], training: Catalog) -> None:
    """Same seed, same text: the dataset can be rebuilt exactly."""
    import asyncio

    from finetune.compose import load_phrases
    from finetune.generate import compose_conversation
    from finetune.personas import load_matrix
    from finetune.retrieval import LocalRetriever
    from services.settings import Settings

    for first in (conversations[0], next(c for c in conversations if c.persona.course_slug in _SKELETONS)):
        again = asyncio.run(
            compose_conversation(
                first.persona,
                0,
                training.courses[first.persona.course_slug],
                LocalRetriever(training),
                Settings(),
                load_phrases(),
                load_matrix().seed,
            )
        )
        assert again.prompt == first.prompt
        assert again.summary_reply == first.summary_reply


_SKELETONS = {s.slug for s in load_skeletons()}
