"""The kind of help asked for (summary request_type)."""

from __future__ import annotations

import pytest

from services.gateway.intake import request_kind


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
    assert request_kind.classify_request([text], assignment_known=False) == expected
