"""Generated conversations: the serving format, the interview's shape, and a valid summary at the end."""

from __future__ import annotations

import json

import msgspec

from finetune.conversation import Conversation
from finetune.split import examples_of
from services.gateway.intake import guardrails
from services.gateway.intake.models import Summary
from services.gateway.intake.summary import DraftText


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
    """Every assistant message that continues the interview asks exactly one question."""
    for conv in conversations:
        replies = [m.text for m in conv.messages if m.role == "assistant"][:-1]
        assert replies and all(r.count("?") == 1 for r in replies), conv.id


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


def test_questions_name_the_students_work_once_known(conversations: list[Conversation]) -> None:
    """Ideal questions usually name the assignment or topic the policy has identified (relevance)."""
    named = total = 0
    for conv in conversations:
        course_titles = {conv.summary["assignment"], conv.summary["topic"]} if conv.summary else set()
        for i in conv.targets:
            total += 1
            text = conv.prompt[i]["content"].lower()
            named += any(word in text for word in _title_words(conv, course_titles))
    assert total and named / total >= 0.5


def _title_words(conv: Conversation, ids: set[str | None]) -> list[str]:
    from finetune.compose import short_title
    from services.coursepack import load_catalog
    from services.settings import REPO_ROOT

    course = load_catalog(REPO_ROOT / "corpus").courses[conv.persona.course_slug]
    items = [
        x for x in (*(course.assignment(i) for i in ids if i), *(course.topic(i) for i in ids if i)) if x
    ]
    return [short_title(x.title).lower() for x in items]


def test_generation_is_reproducible(conversations: list[Conversation]) -> None:
    """Same seed, same text: the dataset can be rebuilt exactly."""
    import asyncio

    from finetune.compose import load_phrases
    from finetune.generate import compose_conversation
    from finetune.personas import load_matrix
    from finetune.retrieval import LocalRetriever
    from services.coursepack import load_catalog
    from services.settings import REPO_ROOT, Settings

    catalog = load_catalog(REPO_ROOT / "corpus")
    first = conversations[0]
    again = asyncio.run(
        compose_conversation(
            first.persona,
            0,
            catalog.courses[first.persona.course_slug],
            LocalRetriever(catalog),
            Settings(),
            load_phrases(),
            load_matrix().seed,
        )
    )
    assert again.prompt == first.prompt
