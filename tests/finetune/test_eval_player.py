"""The scripted student: recognising questions, inserts on their turn, and the recap answer."""

from __future__ import annotations

import random

import msgspec
import pytest

from finetune.eval_player import StudentPlayer, correction_for, question_kind
from finetune.eval_students import EvalSet, course_questions, load_eval_set
from services.coursepack import Catalog


@pytest.fixture(scope="module")
def eval_set() -> EvalSet:
    return load_eval_set()


def _player(eval_set: EvalSet, catalog: Catalog, student_id: str) -> StudentPlayer:
    student = eval_set.student(student_id)
    course = catalog.courses[student.course]
    return StudentPlayer(student, course, course_questions(course), eval_set.question_cues, random.Random(0))


@pytest.mark.parametrize(
    ("course", "question", "kind"),
    [
        ("cs150", "Thanks! Which assignment is this for?", "assignment"),
        ("cs150", "Lab 6 is due Monday. Which part of it is giving you trouble?", "stuck_on"),
        ("cs150", "What have you tried so far on count_words?", "attempts"),
        ("cs150", "When is it due?", "deadline"),
        ("cs150", "What would you like to leave the meeting with?", "goal"),
        (
            "cs150",
            "What would you like to understand better about Lab 5: Loop Patterns after the meeting?",
            "goal",
        ),
        ("cs150", "What error message do you get when it crashes?", "error-message"),
        ("cs150", "Which autograder test is failing?", "failing-test"),
        ("cs150", "Is this for Programming Assignment 3 or Programming Assignment 4?", "assignment"),
        ("chem110", "What numbers did you record in lab for that step, with their units?", "recorded-data"),
        ("chem110", "Which step of the lab are you stuck on?", "stuck_on"),
        ("chem110", "Which section of the report is this for?", "report-section"),
        ("phil210", "Which reading is this about?", "reading"),
        ("phil210", "Could you paste one sentence from your draft that shows the problem?", "draft-sentence"),
        ("phil210", "Paper 2, your stuck point, your goal. Did I get that right?", "recap"),
        ("phil210", "Okay.", None),
    ],
)
def test_question_kind(
    eval_set: EvalSet, catalog: Catalog, course: str, question: str, kind: str | None
) -> None:
    """Course must-asks are recognised before the generic slots; a due date in a preface is not a
    deadline question; a choice between two assignments asks for the assignment."""
    pack = catalog.courses[course]
    assert question_kind(question, pack, course_questions(pack), eval_set.question_cues) == kind


def test_answers_come_from_the_script(eval_set: EvalSet, catalog: Catalog) -> None:
    """The opening is the issue; each recognised question gets its scripted answer; asked twice, the
    student repeats it; an unrecognised question gets the stuck point."""
    player = _player(eval_set, catalog, "cs-02")
    answers = player.student.answers
    assert player.opening() == answers["issue"]
    assert player.reply("Which assignment is this for?") == answers["assignment"]
    assert player.reply("Okay.") == answers["stuck_on"]
    assert player.reply("What error message do you see?") == answers["error-message"]
    assert player.reply("Which assignment is it again?") == "Like I said, n" + answers["assignment"][1:]
    assert player.kinds == ["assignment", None, "error-message", "assignment"]


def test_junk_is_said_on_its_turn_and_the_slot_answered_when_asked_again(
    eval_set: EvalSet, catalog: Catalog
) -> None:
    """A replace insert (junk) takes its turn's answer; the follow-up question then gets the real one."""
    player = _player(eval_set, catalog, "cs-04")  # "idk" at turn 3
    player.opening()
    player.reply("Which assignment is this for?")
    assert player.reply("Which part is giving you trouble?") == "idk"
    assert player.reply("No problem. Which part is giving you trouble?") == player.student.answers["stuck_on"]


def test_distress_append_insert(eval_set: EvalSet, catalog: Catalog) -> None:
    """An append insert follows the answer on its turn."""
    player = _player(eval_set, catalog, "cs-12")
    player.opening()
    player.reply("Which assignment is this for?")
    said = player.reply("What goes wrong?")
    assert said.startswith(player.student.answers["stuck_on"]) and said.endswith(player.student.distress_text)


def test_the_injection_is_hidden_inside_the_answer_of_its_turn(eval_set: EvalSet, catalog: Catalog) -> None:
    """Whatever the bot asks at the injection's turn, the answer carries the injection after its first
    sentence, with the rest of the normal answer after it."""
    player = _player(eval_set, catalog, "cs-07")
    player.opening()
    said = player.reply("Which part is giving you trouble?")
    first, rest = player.student.answers["stuck_on"].split(". ", 1)
    assert said == f"{first}. {player.student.injection} {rest}"
    assert player.student.injection not in player.reply("What would you like to leave the meeting with?")


def test_recap_yes_for_a_student_who_does_not_correct(eval_set: EvalSet, catalog: Catalog) -> None:
    """A student without a correction confirms even a recap naming another assignment."""
    player = _player(eval_set, catalog, "cs-01")
    assert player.reply("Lab 5: Loop Patterns, the loop. Did I get that right?") in {"Yes.", "yes, right"}


def test_recap_assignment_correction(eval_set: EvalSet, catalog: Catalog) -> None:
    """A correcting student names the right assignment and the wrong one once, then confirms; a recap
    that is already right gets a yes."""
    student = eval_set.student("cs-09")
    course = catalog.courses["cs150"]
    player = _player(eval_set, catalog, "cs-09")
    first = player.reply("So: Lab 5: Loop Patterns, find_max with negatives. Did I get that right?")
    assert first == "Not quite — it's for Lab 6: Debugging Practice, not Lab 5: Loop Patterns."
    assert player.reply("Thanks: Lab 6: Debugging Practice. Did I get that right?") == "Yes, that's right."
    assert (
        correction_for(student, course, "Lab 6: Debugging Practice, find_max. Did I get that right?") is None
    )


def test_recap_stuck_point_correction(eval_set: EvalSet, catalog: Catalog) -> None:
    """A student whose real stuck point only comes out at the recap says it there."""
    player = _player(eval_set, catalog, "ch-13")
    said = player.reply("Lab 6, the calculation part. Did I get that right?")
    assert said == f"Actually the part I'm stuck on is {player.student.correct_stuck_on}."
    assert "density" in said


def test_negation_correction(eval_set: EvalSet, catalog: Catalog) -> None:
    """A correcting student with no assignment would say it is not for one (the rule, on a made-up case)."""
    student = eval_set.student("cs-02")
    course = catalog.courses["cs150"]
    correcting = msgspec.structs.replace(student, correct_assignment=True)
    said = correction_for(correcting, course, "Programming Assignment 4: Gradebook. Did I get that right?")
    assert (
        said == "Not quite — it's not for an assignment, it's about Functions, parameters and return values."
    )
    assert correction_for(correcting, course, "Return versus print. Did I get that right?") is None
