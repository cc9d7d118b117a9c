"""The kind of help a student asks for (summary ``request_type``), judged from what they came for."""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.gateway.intake.models import RequestType

_REQUEST_RULES: tuple[tuple[RequestType, re.Pattern[str]], ...] = (
    (
        "grade",
        re.compile(
            r"\b(?:grade[ds]?|grading|regrade|points? (?:off|deducted|taken)|los[et] (?:\w+ )?points|losing points|"
            r"my (?:score|mark)|marked (?:me )?down|why did i get)\b",
            re.I,
        ),
    ),
    (
        "logistics",
        re.compile(
            r"\b(?:extension|extend the (?:deadline|due date)|late (?:submission|penalty|work)|"
            r"miss(?:ed)? (?:class|the (?:exam|quiz|lecture|deadline))|absen(?:t|ce)|"
            r"reschedul\w*|drop (?:the|this) (?:class|course)|enrol\w*|waitlist|accommodation\w*)\b",
            re.I,
        ),
    ),
    (
        "exam_prep",
        re.compile(
            r"\b(?:exams?|midterms?|final exam|quiz(?:zes)?|study(?:ing)? for|"
            r"(?:for|before|on) the test|practice test)\b",
            re.I,
        ),
    ),
    (
        "draft_feedback",
        re.compile(
            r"\b(?:feedback|look (?:at|over)|read(?:ing)? over|review|check|comments? on)\b"
            r"[^.?!]{0,40}\b(?:draft|essay|paper|writing|paragraph|intro\w*|thesis|report)\b|"
            r"\bmy (?:rough )?draft\b",
            re.I,
        ),
    ),
)
_CONCEPT = re.compile(
    r"\b(?:understand|concept|confus\w*|explain|what (?:is|are|does) (?:a |an |the )?\w+|"
    r"how (?:does|do) \w+ work|difference between|meaning of|idea of|when to use)\b",
    re.I,
)
_ASSIGNMENT_WORDS = re.compile(
    r"\b(?:homework|assignment|problem set|pset|essay|lab|project|worksheet)\b", re.I
)


def classify_request(texts: Sequence[str], assignment_known: bool) -> RequestType | None:
    """The kind of help asked for; rules in priority order, None while nothing points anywhere."""
    joined = "\n".join(texts)
    for kind, pattern in _REQUEST_RULES:
        if pattern.search(joined):
            return kind
    if assignment_known:
        return "assignment"
    if _CONCEPT.search(joined):
        return "concept"
    if _ASSIGNMENT_WORDS.search(joined):
        return "assignment"
    return None
