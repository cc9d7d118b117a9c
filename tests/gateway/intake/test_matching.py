"""Course matching: assignments and topics named in a student's words, against courses built in code."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from services.coursepack import Assignment, CalcomMapping, Course, Tone, Topic
from services.gateway.intake import matching
from tests.gateway.intake.scripted import make_course


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
    assert matching.match_assignment(make_course(), text) == expected


def test_assignment_number_beats_shared_keywords() -> None:
    """ "essay 1" must not become Essay 2 just because both are essays; "the argumentative one" finds Essay 2."""
    course = writing_course()
    assert matching.match_assignment(course, "my essay 1 intro") == "essay-1"
    assert matching.match_assignment(course, "the second essay") == "essay-2"
    assert matching.match_assignment(course, "the argumentative one") == "essay-2"
    assert matching.match_assignment(course, "my essay") is None


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
    assert matching.match_topic(make_course(), texts) == expected


def test_stopword_and_abbreviation_keywords_do_not_fire_on_ordinary_words() -> None:
    """Keywords like "a", "the", "may" are ignored; "CS" matches only in capitals, not inside "cs" words."""
    course = writing_course()
    assert matching.match_topic(course, ["I may need a break from the class"]) is None
    assert matching.match_topic(course, ["the teacher wrote CS next to my sentence"]) == "sentences"
    assert matching.match_topic(course, ["I am not sure about articles"]) == "articles"
    assert matching.match_topic(course, ["my thesis is not arguable"]) == "thesis"


def test_a_notes_file_belongs_to_the_topic_its_name_says() -> None:
    """ "notes/regression.md" is the regression topic's file; a sheet or a syllabus belongs to no topic."""
    course = make_course()
    assert matching.topic_of_source(course, "notes/regression.md", "Linear regression") == "regression"
    assert matching.topic_of_source(course, "notes/p-values.md", "P-values and significance") == (
        "hypothesis-testing"
    )
    assert matching.topic_of_source(course, "syllabus.md", "Syllabus") is None
    sheet = next(a.file for a in course.assignments if a.file)
    assert matching.topic_of_source(course, sheet, "Problem Set 3") is None


def test_a_deliverable_word_among_a_topics_keywords_is_weak_evidence() -> None:
    """ "My lab report" names what the student hands in; when a course lists "report" as a keyword of its
    report-writing topic, the word weighs like a generic one, while that topic's own phrases keep their
    weight."""
    course = msgspec.structs.replace(
        writing_course(),
        topics=[
            Topic(
                "reports", "Writing lab reports", ["report", "lab report", "discussion section", "abstract"]
            ),
            Topic("gases", "Gas laws", ["gas law", "STP", "pressure"]),
        ],
        assignments=[Assignment("midterm", "Midterm", dt.date(2026, 3, 4), ["gases"], ["midterm", "test"])],
    )
    assert matching.topic_scores(course, ["for the lab 5 report"])["reports"] == 0.5
    assert matching.topic_scores(course, ["my lab report"])["reports"] == 1.0  # "report" and "lab report"
    assert matching.match_assignment(course, "studying for the test") == "midterm"  # names keep weight
    assert matching.topic_scores(course, ["my abstract is too long"])["reports"] == 2.0
    said = ["For the lab 5 report I must convert to STP and the pressure looks wrong"]
    assert matching.match_topic(course, said) == "gases"


def test_an_upper_case_keyword_that_is_not_an_abbreviation_is_a_phrase() -> None:
    """ "MR = MC" in a topic's keywords matches "MR=MC"; only short single capitals ("MC") are
    case-sensitive abbreviations."""
    course = msgspec.structs.replace(
        writing_course(),
        topics=[
            Topic("costs", "Production costs", ["marginal cost", "MC", "ATC"]),
            Topic("competition", "Perfect competition", ["price taker", "MR = MC", "P = MC"]),
        ],
    )
    said = ["got Q=20 from MR=MC but my price comes out 20 which is just MC"]
    assert matching.match_topic(course, said) == "competition"
    assert matching.topic_scores(course, ["the mc of the firm"])["costs"] == 0.0


def test_a_word_only_one_topics_phrase_uses_counts_for_that_topic_at_half_weight() -> None:
    """ "The ceiling" points at the topic whose keyword is "price ceiling" (no other topic says ceiling),
    at half a keyword's weight; a word two topics' phrases share ("price") counts for neither."""
    course = msgspec.structs.replace(
        writing_course(),
        topics=[
            Topic("controls", "Price controls", ["price ceiling", "price floor", "rent control"]),
            Topic("market", "Supply and demand", ["equilibrium price", "quantity demanded", "shortage"]),
        ],
    )
    assert matching.topic_scores(course, ["with the ceiling at $800"])["controls"] == 1.0
    assert matching.topic_scores(course, ["the price is too high"]) == {"controls": 0.0, "market": 0.0}
    said = ["with the ceiling at $800 the quantity demanded is 600, is that the shortage?"]
    assert matching.topic_scores(course, said)["market"] > matching.topic_scores(course, said)["controls"]


def test_a_word_of_a_topics_title_alone_is_not_evidence() -> None:
    """A title names the topic: "work" of "Working in R" is not something a student says about it ("I
    can't get my work done" is not about R), while the title said whole still counts."""
    course = msgspec.structs.replace(
        writing_course(),
        topics=[
            Topic("r-basics", "Working in R", ["data frame", "vector"]),
            Topic("plots", "Plotting with ggplot", ["ggplot", "scatter plot"]),
        ],
    )
    assert matching.topic_scores(course, ["I can't get my work done this week"])["r-basics"] == 0.0
    assert matching.topic_scores(course, ["I'm new to working in R"])["r-basics"] > 0.0


def test_a_keyword_said_only_to_deny_it_is_not_evidence() -> None:
    """ "There's no error, it just returns 0" says nothing for the error-reading topic; "the error says"
    does."""
    course = msgspec.structs.replace(
        writing_course(),
        topics=[
            Topic("errors", "Reading errors", ["error", "traceback", "error message"]),
            Topic("loops", "Loops", ["loop", "for loop", "range"]),
        ],
    )
    for said in (
        "There's no error, it just returns 0",
        "not an error, just the wrong number",
        "without any traceback",
    ):
        assert matching.topic_scores(course, [said])["errors"] == 0.0, said
    assert matching.topic_scores(course, ["the error says index out of range"])["errors"] > 0
    assert matching.topic_scores(course, ["it works without a for loop but not with one"])["loops"] > 0


def test_an_abbreviation_typed_in_lower_case_still_counts_unless_it_is_an_ordinary_word() -> None:
    """ "maoi" and "ssri" are how students type MAOI and SSRI; "use" or "care" typed in lower case is just
    the word, so a keyword "USE" or "CARE" still needs the capitals."""
    course = make_course()
    course.topics.append(Topic("drugs", "Psychotropic drugs", ["MAOI", "SSRI", "USE"]))
    assert matching.topic_scores(course, ["why cant you eat aged cheese on a maoi"])["drugs"] >= 1.0
    assert matching.topic_scores(course, ["is sertraline an ssri"])["drugs"] >= 1.0
    assert matching.topic_scores(course, ["what is the use of this"])["drugs"] == 0.0
    assert matching.topic_scores(course, ["the USE keyword"])["drugs"] >= 1.0
