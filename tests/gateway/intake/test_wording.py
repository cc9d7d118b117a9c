"""Wording: the policy's template questions, greeting and recap."""

from __future__ import annotations

from services.gateway.intake import policy, reading, wording
from services.gateway.intake.models import Facts, InterviewState
from services.gateway.intake.text import clause_prefix
from tests.gateway.intake.scripted import TODAY, make_booking, make_course


def test_template_questions_are_single_short_questions_naming_the_assignment() -> None:
    """Every slot's template is one question under 160 characters; grounded ones name the assignment title."""
    course, booking = make_course(), make_booking()
    facts = Facts(assignment="ps3", topic="hypothesis-testing")
    for slot in (
        "issue",
        "assignment",
        "stuck_on",
        "topic",
        "attempts",
        "goal",
        "deadline",
        "example",
        "anything_else",
    ):
        for variant in (0, 1):
            q = wording.question(slot, course, booking, facts, TODAY, variant)
            assert q.endswith("?") and q.count("?") == 1 and len(q) < 160, q
    assert "Problem Set 3: Hypothesis Tests" in wording.question("stuck_on", course, booking, facts, TODAY)
    assert "Problem Set 3" in wording.question("assignment", course, booking, Facts(), TODAY)


def test_opening_names_the_assignment_from_the_booking_notes() -> None:
    """Notes that name an assignment make the first question specific; the opening is deterministic."""
    course = make_course()
    state = InterviewState()
    obs = reading.read(
        "Help with problem set 3 please", course, answering=None, heard=reading.Heard(), from_notes=True
    )
    policy.update(state, course, obs, TODAY)
    text = wording.opening(course, make_booking(), state.facts, TODAY)
    assert text.startswith("Hi Mina!") and "Problem Set 3: Hypothesis Tests" in text and text.count("?") == 1


def test_the_recap_names_assignment_stuck_point_and_goal_in_the_second_person() -> None:
    """The recap is one question with the public cue, names the assignment, and says the student's words back."""
    facts = Facts(
        assignment="ps3",
        stuck_on="I'm stuck on when to reject the null.",
        goal="I want to understand the rule.",
    )
    text = wording.recap(make_course(), facts, TODAY)
    assert wording.RECAP_CUE in text and text.count("?") == 1
    assert "Problem Set 3: Hypothesis Tests" in text and "you're stuck on when to reject the null" in text
    assert "you want to understand the rule" in text


def test_the_recap_says_back_the_problem_not_what_it_is_not_about() -> None:
    """ "hey not about a report or anything, just confused about ..." is said back from "just confused"."""
    facts = Facts(
        topic="hypothesis-tests", stuck_on="hey not about a report or anything, just confused about p-values"
    )
    text = wording.recap(make_course(), facts, TODAY)
    assert "the hard part: just confused about p-values" in text and "not about" not in text, text


def test_a_long_stuck_point_is_said_back_in_whole_clauses() -> None:
    """A long stuck point is shortened to its first whole clauses for the recap, never cut mid-phrase."""
    stuck = (
        "I'm still on problem 3, the one with the two-tailed test on the battery data, and my p-value comes "
        "out twice as big as the answer key says, because I think I doubled it when I shouldn't have"
    )
    text = wording.recap(make_course(), Facts(assignment="ps3", stuck_on=stuck), TODAY)
    assert "…" not in text, text
    assert (
        "the hard part: you're still on problem 3, the one with the two-tailed test on the battery data"
        in text
    )


def test_the_recap_does_not_say_a_greeting_back() -> None:
    """ "Hey I'm working on ..." (the opening answer, greeting and all) is said back without the "Hey"."""
    facts = Facts(assignment="ps3", stuck_on="Hey I'm working on ps3 and the p-value comes out wrong")
    text = wording.recap(make_course(), facts, TODAY)
    assert "the hard part: you're working on ps3" in text and "Hey" not in text, text


def test_a_long_stuck_point_is_never_cut_inside_a_phrase_or_before_its_question() -> None:
    """Clause cuts in the recap: never inside "the strong and the moderate version" nor after "you never
    know", and never dropping the trouble itself when what fits is only the story before it ("Trial 2
    used 3 mL more NaOH than the others because I overshot it" says nothing of the question); "I was"
    is said back as "you were"."""
    course = make_course()

    def hard_part(stuck: str) -> str:
        text = wording.recap(course, Facts(assignment="ps3", stuck_on=stuck), TODAY)
        return text.split("the hard part: ", 1)[1].split(". Did I", 1)[0]

    phrase = (
        "For the response I must say which version of the principle I use and I don't see the difference "
        "between the strong and the moderate version of it, which everyone in the seminar seems to get"
    )
    assert not hard_part(phrase).endswith("the strong"), hard_part(phrase)
    story = (
        "Trial 2 used 3 mL more NaOH than the others because I overshot it and it went dark pink and I "
        "don't know if I'm allowed to leave it out or how to talk about it in the discussion section"
    )
    assert "don't know if you're allowed to leave it out" in hard_part(story), hard_part(story)
    assert hard_part("Last weekend I was at a party and I was bored") == (
        "Last weekend you were at a party and you were bored"
    )


def test_clause_prefix_ends_on_a_whole_clause() -> None:
    """The shared clause cutter: the longest start ending a clause that fits, never on a dangling word."""
    text = "I never know when significant figures go by decimal places, and when they go by sig figs"
    assert clause_prefix(text, 80) == "I never know when significant figures go by decimal places"
    assert clause_prefix("you never know when the rule applies and why", 30) == ""
