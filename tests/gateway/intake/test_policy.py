"""Dialogue policy: fact extraction against a course built in code, slot choice and stop rules (no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.coursepack import Assignment, CalcomMapping, Course, Tone, Topic
from services.gateway.intake import policy
from services.gateway.intake.models import ChatMessage, Facts, InterviewState
from services.settings import Settings
from tests.gateway.intake.scripted import TODAY, make_booking, make_course


def writing_course() -> Course:
    """A second invented course with the awkward keywords real packs have ("a", "the", "may", "CS")."""
    return Course(
        code="ENG 9",
        title="College Writing",
        instructor_name="Prof. Diaz",
        instructor_email="d@x.edu",
        calcom=CalcomMapping(event_type_ids=[1]),
        tone=Tone(),
        topics=[
            Topic("articles", "Articles", ["a", "an", "the", "article", "zero article"]),
            Topic("thesis", "Thesis statements", ["thesis", "main claim", "arguable"]),
            Topic("sentences", "Run-ons and comma splices", ["run-on", "comma splice", "CS", "fragment"]),
            Topic("hedging", "Hedging", ["may", "might", "hedging", "too strong"]),
        ],
        assignments=[
            Assignment("essay-1", "Essay 1: Narrative", dt.date(2026, 3, 4), ["thesis"], ["narrative"]),
            Assignment(
                "essay-2", "Essay 2: Argument", dt.date(2026, 4, 1), ["thesis"], ["argumentative", "essay 2"]
            ),
        ],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I need help with ps3", "ps3"),
        ("question about problem set 3", "ps3"),
        ("PS 3 part b", "ps3"),
        ("homework 3 is confusing", "ps3"),
        ("the third problem set", "ps3"),
        ("Problem Set 4: Regression", "ps4"),
        ("it's for the data report", "project"),
        ("problem set 5", None),
        ("I have a question", None),
    ],
)
def test_assignment_is_recognised_by_label_title_or_keyword(text: str, expected: str | None) -> None:
    """Students name assignments many ways ("ps3", "homework 3", "the third problem set"); unknown ones stay None."""
    assert policy.match_assignment(make_course(), text) == expected


def test_assignment_number_beats_shared_keywords() -> None:
    """ "essay 1" must not become Essay 2 just because both are essays; "the argumentative one" finds Essay 2."""
    course = writing_course()
    assert policy.match_assignment(course, "my essay 1 intro") == "essay-1"
    assert policy.match_assignment(course, "the second essay") == "essay-2"
    assert policy.match_assignment(course, "the argumentative one") == "essay-2"
    assert policy.match_assignment(course, "my essay") is None


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["I don't get p-values"], "hypothesis-testing"),
        (["when do I reject the null hypothesis"], "hypothesis-testing"),
        (["my regression slope is negative"], "regression"),
        (["RStudio gives me an error message"], "r-programming"),
        (["I am behind on everything"], None),
    ],
)
def test_topic_comes_from_keywords_and_titles(texts: list[str], expected: str | None) -> None:
    """Topic ids come from the course's own keywords and titles; no evidence means None (summary says "other")."""
    assert policy.match_topic(make_course(), texts) == expected


def test_stopword_and_abbreviation_keywords_do_not_fire_on_ordinary_words() -> None:
    """Keywords like "a", "the", "may" are ignored; "CS" matches only in capitals, not inside "cs" words."""
    course = writing_course()
    assert policy.match_topic(course, ["I may need a break from the class"]) is None
    assert policy.match_topic(course, ["the teacher wrote CS next to my sentence"]) == "sentences"
    assert policy.match_topic(course, ["I am not sure about articles"]) == "articles"
    assert policy.match_topic(course, ["my thesis is not arguable"]) == "thesis"


@pytest.mark.parametrize(
    ("text", "answering", "expected"),
    [
        ("it is due friday", False, "2026-03-06"),
        ("the deadline is tomorrow", False, "2026-03-03"),
        ("due Oct 30", False, "2026-10-30"),
        ("I have to submit it by 3/10", False, "2026-03-10"),
        ("due in 3 days", False, "2026-03-05"),
        ("next week", True, "2026-03-09"),
        ("I talked to my friend on friday", False, None),
        ("not sure", True, None),
    ],
)
def test_deadline_is_read_only_where_a_deadline_is_talked_about(
    text: str, answering: bool, expected: str | None
) -> None:
    """Dates become ISO deadlines when the sentence is about a deadline (or answers the deadline question)."""
    assert policy.extract_deadline(text, TODAY, answering) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("why did I lose points on ps2", "grade"),
        ("can I get an extension", "logistics"),
        ("studying for the midterm", "exam_prep"),
        ("could you look at my draft introduction", "draft_feedback"),
        ("I don't understand what a p-value is", "concept"),
        ("hello", None),
    ],
)
def test_request_type_rules(text: str, expected: str | None) -> None:
    """Request types follow readable rules in priority order."""
    assert policy.classify_request([text], assignment_known=False) == expected


def test_urgency_compares_the_deadline_with_the_appointment() -> None:
    """Due within 2 days of the meeting is high, within a week medium, otherwise (or unknown) low."""
    course, booking = make_course(), make_booking(start="2026-03-05T15:00:00Z")
    assert policy.urgency(Facts(assignment="ps3"), course, booking) == "high"  # due 03-06
    assert policy.urgency(Facts(deadline="2026-03-10"), course, booking) == "medium"
    assert policy.urgency(Facts(assignment="ps4"), course, booking) == "low"
    assert policy.urgency(Facts(), course, booking) == "low"


def _state(*turns: tuple[str, str]) -> InterviewState:
    """A state where the bot asked each slot and the student answered with the text."""
    state = InterviewState()
    course = make_course()
    for slot, answer in turns:
        state.asked.append(slot)
        state.messages.append(ChatMessage("assistant", f"({slot})"))
        state.messages.append(ChatMessage("student", answer))
        policy.observe(state, course, answer, TODAY, slot=slot)
    return state


def test_direct_answers_fill_the_slot_asked_and_cues_fill_others() -> None:
    """A rambling answer fills several slots at once, so the bot does not ask what was already said."""
    state = _state(
        (
            "issue",
            "I'm stuck on problem set 3, the p-value part. I already re-read the lecture "
            "notes and tried the practice quiz. I want to understand when to reject the null.",
        )
    )
    facts = state.facts
    assert facts.assignment == "ps3" and facts.topic == "hypothesis-testing"
    assert facts.stuck_on and "p-value" in facts.stuck_on
    assert facts.attempts and "re-read" in facts.attempts
    assert facts.goal and "reject the null" in facts.goal
    decision = policy.decide(state, make_course(), Settings())
    assert decision.slot not in {"attempts", "goal", "assignment"}


def test_non_answers_leave_the_slot_open_and_it_is_asked_once_more() -> None:
    """ "idk" does not fill a slot; the slot gets one re-ask (variant 1), never a third."""
    state = _state(("issue", "ps3"), ("stuck_on", "idk"))
    assert policy.decide(state, make_course(), Settings()) == policy.Decision("ask", "stuck_on", 1)
    state = _state(("issue", "ps3"), ("stuck_on", "idk"), ("stuck_on", "dunno"))
    assert policy.decide(state, make_course(), Settings()).slot != "stuck_on"


def test_nothing_is_a_valid_answer_about_attempts() -> None:
    """ "nothing yet" answers the attempts question (it is useful for the professor to know)."""
    state = _state(("issue", "ps3 p-values"), ("attempts", "nothing yet"))
    assert state.facts.attempts == "Nothing yet."


def test_confused_student_gets_the_same_slot_rephrased() -> None:
    """ "What do you mean?" re-asks the pending slot with the simpler variant instead of moving on."""
    state = _state(("issue", "ps3 p-values"), ("attempts", "what do you mean?"))
    assert policy.decide(state, make_course(), Settings()) == policy.Decision("ask", "attempts", 1)


def test_stops_after_min_turns_once_essentials_are_known_and_never_after_max() -> None:
    """Essentials known at turn 5 -> finish; nothing known -> keep asking, but finish at max_turns (8)."""
    settings = Settings()
    full = _state(
        ("issue", "p-values in ps3"),
        ("stuck_on", "rejecting the null"),
        ("attempts", "read notes"),
        ("goal", "I want to understand the rule"),
        ("example", "p = 0.03"),
    )
    assert policy.decide(full, make_course(), settings).action == "finish"
    early = _state(
        ("issue", "p-values in ps3"),
        ("stuck_on", "rejecting the null"),
        ("attempts", "read notes"),
        ("goal", "I want to understand the rule"),
    )
    assert policy.decide(early, make_course(), settings).action == "ask"
    vague = _state(*[("issue", "idk")] * 7)
    assert policy.decide(vague, make_course(), settings).action == "ask"
    vague = _state(*[("issue", "idk")] * 8)
    assert policy.decide(vague, make_course(), settings).action == "finish"


def test_template_questions_are_single_short_questions_naming_the_assignment() -> None:
    """Every slot's template is one question under 160 characters; grounded ones name the assignment title."""
    course, booking = make_course(), make_booking()
    facts = Facts(assignment="ps3", topic="hypothesis-testing")
    for slot in policy.SLOT_ORDER:
        for variant in (0, 1):
            q = policy.question(slot, course, booking, facts, TODAY, variant)
            assert q.endswith("?") and q.count("?") == 1 and len(q) < 160, q
    assert "Problem Set 3: Hypothesis Tests" in policy.question("stuck_on", course, booking, facts, TODAY)
    assert "Problem Set 3" in policy.question("assignment", course, booking, Facts(), TODAY)


def test_opening_names_the_assignment_from_the_booking_notes() -> None:
    """Notes that name an assignment make the first question specific; the opening is deterministic."""
    course = make_course()
    state = InterviewState()
    policy.observe(state, course, "Help with problem set 3 please", TODAY, slot=None, from_notes=True)
    text = policy.opening(course, make_booking(), state.facts, TODAY)
    assert text.startswith("Hi Mina!") and "Problem Set 3: Hypothesis Tests" in text and text.count("?") == 1
