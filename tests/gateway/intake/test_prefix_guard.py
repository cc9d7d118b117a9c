"""Releasing a model reply while it streams: the prefix checks hold back exactly what could still fail,
so the student sees words early and never sees text that is later taken back."""

from __future__ import annotations

import msgspec

from services.coursepack import Assignment
from services.gateway.intake.guardrails import PrefixGuard, check_reply
from services.gateway.intake.interview import Interviewer, TurnOutcome
from services.gateway.intake.models import InterviewState
from services.settings import Settings
from tests.gateway.intake.scripted import (
    TODAY,
    ListRetriever,
    ScriptedModel,
    make_booking,
    make_course,
    make_passages,
)

COURSE = make_course()
SYSTEM = (
    "You help a student get ready for office hours. Never solve it, never give answers or corrected text."
)


def _shown(guard: PrefixGuard, text: str) -> str:
    release = guard.check(text)
    assert not release.problems, release.problems
    return text[: release.safe]


def test_finished_words_of_a_harmless_preface_are_released_at_once() -> None:
    """Only the word still being typed is held: a preface streams word by word."""
    guard = PrefixGuard(system_prompt=SYSTEM)
    assert _shown(guard, "Thanks, that hel") == "Thanks, that "
    assert _shown(guard, "Thanks, that helps. ") == "Thanks, that helps. "


def test_the_start_of_a_solution_phrase_is_held_until_it_is_decided() -> None:
    """ "The answer" could become "the answer is": held; "is" decides it is a solution, nothing shown."""
    guard = PrefixGuard(system_prompt=SYSTEM)
    assert _shown(guard, "Good, the answer ") == "Good, "
    assert guard.check("Good, the answer is ").problems == ["solution"]
    assert _shown(guard, "Good, the answer key ") == "Good, the answer key "  # no longer a solution


def test_a_run_of_the_system_prompt_is_held_and_seven_words_are_a_leak() -> None:
    """Words that continue the system prompt are held until the run breaks or reaches seven words."""
    guard = PrefixGuard(system_prompt=SYSTEM)
    assert _shown(guard, "OK, never solve it, never ") == "OK, "
    assert "leak" in guard.check("OK, never solve it, never give answers or ").problems
    assert _shown(guard, "OK, never solve it, maybe ") == "OK, never solve it, maybe "


def test_the_instructions_words_for_the_student_are_held_and_stopped() -> None:
    """ "... is hardest for" could still end "for them" (the instruction's words): held, then stopped."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on")
    assert _shown(guard, "Which part of it is hardest for ") == "Which part of it "
    assert "leak" in guard.check("Which part of it is hardest for them?").problems
    assert guard.check("Which part of it is hardest for you?").problems == []


def test_a_sentence_that_so_far_repeats_an_earlier_one_is_held() -> None:
    """An earlier bot question is held word for word while it matches, and five shared words repeat it."""
    guard = PrefixGuard(system_prompt=SYSTEM, previous=["Hi! What would you like help with today?"])
    assert _shown(guard, "Sure. What would you ") == "Sure. "
    assert guard.check("Sure. What would you like help ").problems == ["repeat"]


def test_a_question_is_held_until_it_asks_for_the_slot() -> None:
    """A question sentence shows once it has three words and one of the slot's words."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="attempts")
    assert _shown(guard, "Thanks. What have you ") == "Thanks. "
    assert _shown(guard, "Thanks. What have you already tried ") == "Thanks. What have you already tried "


def test_an_assignment_name_is_held_until_complete_and_a_wrong_one_fails() -> None:
    """ "Problem Set" may become the wrong assignment: held; "Problem Set 4" is the wrong one."""
    guard = PrefixGuard(system_prompt=SYSTEM, course=COURSE, assignment="ps3")
    assert _shown(guard, "Tell me about Problem Set ") == "Tell me about "
    assert guard.check("Tell me about Problem Set 4 ").problems == ["wrong_assignment"]
    assert _shown(guard, "Tell me about Problem Set 3 and ") == "Tell me about Problem Set 3 and "


async def _turn(model: ScriptedModel, text: str) -> tuple[list[str], TurnOutcome]:
    iv = Interviewer(model, ListRetriever(make_passages()), Settings(), today=lambda c: TODAY)
    state = InterviewState()
    await iv.prepare(state, COURSE, make_booking())
    iv.opening(state, COURSE, make_booking())
    pieces: list[str] = []
    outcome = None
    async for item in iv.turn(state, COURSE, make_booking(), text):
        if isinstance(item, TurnOutcome):
            outcome = item
        elif isinstance(item, str):
            pieces.append(item)
    assert outcome is not None and "".join(pieces) == outcome.reply  # nothing shown is ever taken back
    return pieces, outcome


async def test_a_good_question_streams_in_several_pieces() -> None:
    """The reply reaches the student word by word, not as one block at the question mark."""
    model = ScriptedModel(
        default="Thanks for explaining that so clearly. Which part of it is hardest for you?"
    )
    pieces, outcome = await _turn(model, "ps3, p-values confuse me")
    assert outcome.reply == "Thanks for explaining that so clearly. Which part of it is hardest for you?"
    assert len(pieces) >= 5 and pieces[0] == "Thanks "


async def test_a_problem_after_shown_words_ends_with_the_policy_question_not_a_take_back() -> None:
    """A solution that starts mid-sentence: the words before it stay, the policy's question follows, and
    the model is not asked again (its unfinished sentence is on screen)."""
    model = ScriptedModel("Okay, so you could say that the answer is 0.05 here. Which part?")
    _, outcome = await _turn(model, "ps3, p-values confuse me")
    assert outcome.reply.startswith("Okay, so you could say that … ") and "answer is" not in outcome.reply
    assert outcome.reply.endswith("?") and len(model.calls) == 1


def test_a_reply_copying_the_policys_question_is_held_where_it_turns_away_from_it() -> None:
    """Word for word the policy's question streams; from the first word that departs from it (after five
    copied), the sentence waits until it ends and is judged. A copy that never departs is not held."""
    asked = "What have you tried so far on Problem Set 3: Hypothesis Tests?"
    guard = PrefixGuard(system_prompt=SYSTEM, slot="attempts", questions=[asked])
    copied = "What have you tried so far on Problem Set 3: Hypothesis "
    assert _shown(guard, copied) == copied.rstrip()  # the space waits: "Hypothesis" + "?" may end it
    assert _shown(guard, copied + "Tests sheet, which step ") == copied + "Tests"
    assert _shown(guard, "What have you tried so far, and ") == "What have you tried so far"  # the comma
    plain = PrefixGuard(system_prompt=SYSTEM, slot="attempts")
    three = "What have you already tried for "  # three words copied are no copy yet: nothing more is held
    assert _shown(guard, three) == _shown(plain, three) == "What have you already tried "


async def test_a_copy_of_the_policys_question_that_goes_wrong_ends_as_that_question() -> None:
    """The model copies the start of the policy's question, then says something it must not: the screen
    shows the copied start, and the question's own rest completes it, not "… " and the question anew."""
    asked = "Which part of Problem Set 3: Hypothesis Tests is giving you the most trouble?"
    model = ScriptedModel(
        "Which part of Problem Set 3: Hypothesis Tests sheet, since the answer is 0.05, is it?"
    )
    _, outcome = await _turn(model, "ps3, p-values confuse me")
    assert outcome.reply == asked and len(model.calls) == 1


async def test_a_copy_of_the_deeper_steers_words_that_goes_wrong_ends_as_the_steers_question() -> None:
    """Asked one step deeper, the model often opens with the steer's own words ("Which exact step or
    idea ..."): when it then goes wrong, the steer's question completes what is on screen; when it goes
    on well, its own question stands."""
    told = "I'm stuck on problem set 3, the t-test questions: I can't tell when the p-value means I should reject it."
    aim = "Which exact step or idea in what you described is hardest for you?"
    for said in (
        "Which exact step or idea or example the the the?",
        "Which exact step or idea, the answer is 0.05?",
    ):
        model = ScriptedModel(said, said)
        _, outcome = await _turn(model, told)
        assert outcome.reply == aim and len(model.calls) == 1
    _, outcome = await _turn(ScriptedModel("Which exact step or idea of the t-test is hardest?"), told)
    assert outcome.reply == "Which exact step or idea of the t-test is hardest?"


def test_a_wrong_assignment_name_not_yet_shown_is_put_right() -> None:
    """The name was held, so the words around it can stay: it becomes the identified assignment, or
    "your assignment" when none is known; a name already on screen cannot be repaired."""
    guard = PrefixGuard(system_prompt=SYSTEM, course=COURSE, assignment="ps3")
    assert guard.repair("Which part of Problem Set 4 is ", 14) == "Which part of Problem Set 3 is "
    unknown = PrefixGuard(system_prompt=SYSTEM, course=COURSE, assignment=None)
    assert unknown.repair("Which part of Problem Set 4 is ", 14) == "Which part of your assignment is "
    assert guard.repair("Which part of Problem Set 4 is ", 20) is None


async def test_a_streamed_question_naming_the_wrong_assignment_is_kept_with_the_right_name() -> None:
    """Nothing shown is taken back and no dangling sentence is left: the unshown name is replaced."""
    model = ScriptedModel(
        default="Thanks for explaining that. Which part of Problem Set 4 is hardest for you?"
    )
    _, outcome = await _turn(model, "ps3, p-values confuse me")
    assert outcome.reply == "Thanks for explaining that. Which part of Problem Set 3 is hardest for you?"


def test_naming_the_assignment_again_is_not_a_repeat_but_asking_the_same_thing_is() -> None:
    """A question may name "Problem Set 3: Hypothesis Tests" as the one before it did (the course's own
    names do not count toward a repeated run); a question that repeats the earlier one's words still does."""
    previous = ["Which part of Problem Set 3: Hypothesis Tests is giving you the most trouble?"]
    guard = PrefixGuard(
        system_prompt=SYSTEM, previous=previous, slot="attempts", course=COURSE, assignment="ps3"
    )
    assert not guard.check("What have you tried so far on Problem Set 3: Hypothesis Tests?").problems
    assert "repeat" in guard.check("So which part of it is giving you the most trouble?").problems


def test_asking_which_assignment_may_name_one_candidate() -> None:
    """With no assignment identified yet, "Is this for Problem Set 4: Regression?" asks; once ps3 is known,
    naming ps4 is a wrong assignment."""
    asking = PrefixGuard(system_prompt=SYSTEM, slot="assignment", course=COURSE, assignment=None)
    assert not asking.check("Is this for Problem Set 4: Regression, or another one?").problems
    known = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on", course=COURSE, assignment="ps3")
    assert "wrong_assignment" in known.check("Which part of Problem Set 4: Regression is hard?").problems


def test_a_preface_said_in_an_earlier_turn_is_never_shown_again() -> None:
    """ "What a great question!" (four words, shorter than a repeat run) opened the last reply: the same
    preface is held while it streams and fails once finished, so the student never sees it twice."""
    guard = PrefixGuard(
        system_prompt=SYSTEM,
        previous=["What a great question! What is the exact error message you see?"],
        slot="attempts",
    )
    assert _shown(guard, "What a great ques") == ""
    assert guard.check("What a great question! Could you say what you tried?").problems == ["repeat"]
    assert _shown(guard, "Thanks for the detail. What have you tried so far? ") == (
        "Thanks for the detail. What have you tried so far? "
    )


def test_a_reply_that_repeats_itself_stops_at_the_repeat() -> None:
    """The small model looping on one sentence: the first one may show, the loop never does."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="attempts")
    once = "I'm glad to hear that you're a bit all over the place. "
    assert _shown(guard, once) == once
    assert _shown(guard, once + "I'm glad to") == once  # could be the loop starting: held
    assert guard.check(once + "I'm glad to hear that you").problems == ["repeat"]
    assert guard.check(once + once).problems == ["repeat"]
    again = PrefixGuard(system_prompt=SYSTEM, previous=["Thanks! What is the exact error?"], slot="attempts")
    assert again.check("Thanks! What have you tried so far?").problems == []  # one word is not a sentence


def test_a_reply_opening_with_a_one_letter_word_is_not_junk_before_its_next_words() -> None:
    """The model's first piece is often "I" or "A": a one-letter start is no junk while the reply is
    still arriving (it was, and every such reply was dropped after one token), but a finished reply of
    only such words is."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on")
    assert guard.check("I").problems == []
    assert guard.check("I ").problems == []
    assert _shown(guard, "I see. Which part is hardest? ") == "I see. Which part is hardest? "
    assert "garbled" in check_reply("I a ?", system_prompt=SYSTEM, previous=[])


def test_junk_words_never_show_and_a_lone_first_word_waits_for_the_next() -> None:
    """A model emitting "blorp blorp ..." or "zxqv blorp ##": the first word is held until the second can
    judge it (a stutter), and words that are in no dictionary and were not given to the model are junk.
    A course term the model was given is not junk, however rare."""
    guard = PrefixGuard(system_prompt=SYSTEM)
    assert _shown(guard, "blorp ") == ""
    assert guard.check("blorp blorp ").problems == ["garbled"]
    assert guard.check("zxqv blorp ").problems == ["garbled"]
    assert _shown(guard, "Thanks, that ") == "Thanks, that "
    given = PrefixGuard(system_prompt=SYSTEM, given="my eutrophication and hypolimnion notes")
    assert _shown(given, "Thanks, eutrophication and hypolimnion: which ") == (
        "Thanks, eutrophication and hypolimnion: which "
    )


async def test_a_reply_of_endless_junk_shows_none_of_it() -> None:
    """The junk model of the chaos tests ("blorp " three hundred times): the student reads the policy's
    question and not one junk word."""
    model = ScriptedModel("blorp " * 300, default="blorp " * 300)
    _, outcome = await _turn(model, "ps3, p-values confuse me")
    assert "blorp" not in outcome.reply and outcome.reply.endswith("?")


def test_a_lecture_before_the_question_never_shows() -> None:
    """An acknowledgement streams; a further statement waits until it ends, and a third statement (or
    more than 12 words of them) is the small model explaining the concept: it fails and never shows. A
    first statement that acknowledges nothing waits until it ends too (make eval: "Lab 5 is a real-world
    example of a class-based exception, which is a common pattern in Python.")."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on")
    assert _shown(guard, "Thanks, that help") == "Thanks, that "
    assert _shown(guard, "Thanks. That helps. In the course notes, it ") == "Thanks. That helps. "
    lecture = 'Thanks. That helps. In the notes, "a list can be changed back." Which step is hard?'
    assert guard.check(lecture).problems == ["lecture"]
    assert not guard.check("Thanks. That helps. Which step is giving you the most trouble?").problems
    invented = "Lab 5 is a real-world example of a class-based exception, which is a common "
    assert _shown(guard, invented) == ""
    assert guard.check(invented + "pattern in Python. Which step is hard?").problems == ["lecture"]
    assert _shown(guard, "That makes sense. Lab 5 is ") == "That makes sense. "
    assert _shown(guard, "Lab 5 has two parts. Which ") == "Lab 5 has two parts. "  # judged: short


def test_a_short_preface_that_cites_or_quotes_the_materials_never_shows() -> None:
    """Two statements are allowed, but not one that quotes or cites the notes (make eval cs-18: "Thanks for
    explaining. In the course notes, it says: "When working with lists and dictionaries, the order of
    assignment is not always clear." ...", words the notes do not have). A citation is held from its
    first words, so even a first statement never shows it."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on")
    cited = (
        'Thanks for explaining. In the course notes, it says: "the order is not clear." Which step is hard?'
    )
    assert guard.check(cited).problems == ["lecture"]
    assert _shown(guard, "In the course notes, it ") == ""  # no acknowledgement: held until judged
    assert guard.check("In the course notes, it says").problems == ["lecture"]
    assert guard.check("Thanks. The notes say lists are mutable. Which step is hard?").problems == ["lecture"]
    plain = "Thanks for explaining. Thinking of “Expected versus actual”, which step is giving you trouble?"
    assert not guard.check(plain).problems


async def test_a_lecturing_reply_shows_only_its_acknowledgement() -> None:
    """The eval's cs-18 case: the model starts explaining lists in invented course-note words; the student
    reads the acknowledgement and then a question, never the explanation."""
    lecture = (
        'Thanks. That helps. In the course notes, it says "When a list is modified, it can be changed back. '
        'Changing a list to a new list is a good example of this." Which step is giving you trouble?'
    )
    model = ScriptedModel(lecture, default=lecture)
    _, outcome = await _turn(model, "ps3, p-values confuse me")
    assert outcome.reply.startswith("Thanks. That helps. ") and "course notes" not in outcome.reply
    assert outcome.reply.endswith("?")


def test_writing_out_a_long_assignment_title_is_not_a_leak() -> None:
    """ "Lab 6 Report: Acid-Base Titration of Vinegar" is eight words of the system prompt, but the course's
    own names: a question naming it leaks nothing (the demo's first turn was cut mid-name). A run of the
    prompt's instructions around a name still is a leak."""
    titled = msgspec.structs.replace(
        COURSE,
        assignments=[*COURSE.assignments, Assignment("lab6", "Lab 6 Report: Acid-Base Titration of Vinegar")],
    )
    system = SYSTEM + " Assignments: Lab 6 Report: Acid-Base Titration of Vinegar (due Friday)."
    question = "Is this for Lab 6 Report: Acid-Base Titration of Vinegar, or another one?"
    guard = PrefixGuard(system_prompt=system, slot="assignment", course=titled)
    assert not guard.check(question).problems
    assert not check_reply(question, system_prompt=system, previous=[], slot="assignment", course=titled)
    assert (
        "leak" in guard.check("Sure. Never solve it, never give answers or corrected text. Which?").problems
    )


async def test_an_explanation_that_opens_like_a_question_shows_only_as_a_question() -> None:
    """ "What makes ..." is held until its sentence ends: a question shows, an explanation is a lecture."""
    guard = PrefixGuard(system_prompt=SYSTEM, slot="stuck_on")
    explained = "What makes functions tricky for Python beginners is that they all have different "
    assert _shown(guard, explained) == ""
    assert "lecture" in guard.check(explained + "names and rules. Which step is hard?").problems
    told = "On problem set 3 I don't get why my p-value is bigger than 0.05 when the difference looks big"
    model = ScriptedModel(explained + "names and rules. Which step is hard?")
    _, outcome = await _turn(model, told)
    assert "Python beginners" not in outcome.reply and outcome.reply.endswith("?")
    asked = "What makes this step the hardest part for you?"
    _, outcome = await _turn(ScriptedModel(asked), told)
    assert outcome.reply == asked
