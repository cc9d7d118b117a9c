"""Who the staff are and what they may see: people come from the course packs, the operator from a password.

A course's staff are its ``instructor_email`` plus its ``[[staff]]`` entries (corpus/README.md); one
person may staff several courses. They log in with an emailed single-use link (``login_links``); the
operator logs in with ``INTAKE_STAFF_PASSWORD_HASH`` and sees every course.

The session (Litestar's server-side session on Redis, see ``auth``) stores only who logged in; the
courses are worked out from the catalog on every request, so taking someone out of a ``course.toml``
(and reloading the catalog) takes their access away at once.

For handlers: every ``/staff`` route runs behind ``auth.staff_guard`` (or ``auth.operator_guard``), which
puts the ``StaffPrincipal`` on the request. Ask for it by name::

    @get("/staff/api/things", guards=[auth.staff_guard])
    async def things(principal: StaffPrincipal) -> ...:
        if principal.can_see(record.course_slug): ...

and a route with a ``{staff_id:str}`` path parameter also gets the intake the guard already checked
(another course's intake is a 404 before the handler runs)::

    async def handler(staff_intake: StaffIntake) -> ...:
        staff_intake.token, staff_intake.record
"""

from __future__ import annotations

import hashlib
import secrets

import msgspec

from services.coursepack import Catalog
from services.gateway.intake.models import IntakeRecord

OPERATOR = "operator"  # the actor name of the password login in the audit log
LINK_TTL_S = 15 * 60
_LINK = "staff:link:{}"  # sha256 of the link's token -> email; the token itself is never stored


class StaffPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """The logged-in staff member: who (for the audit log and staff messages) and which courses."""

    email: str  # "" for the operator
    name: str
    courses: frozenset[str]  # course slugs; the operator gets every course in the catalog
    is_operator: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return OPERATOR if self.is_operator else self.email

    def can_see(self, course_slug: str) -> bool:
        return self.is_operator or course_slug in self.courses


class StaffIntake(msgspec.Struct, kw_only=True):
    """An intake a staff route addresses by ``staff_id``, already checked against the principal's courses."""

    staff_id: str
    token: str
    record: IntakeRecord


def principal_for(catalog: Catalog, email: str | None, *, operator: bool = False) -> StaffPrincipal | None:
    """The principal for a session, or None when ``email`` staffs no course (any more)."""
    if operator:
        return StaffPrincipal(email="", name="Operator", courses=frozenset(catalog.courses), is_operator=True)
    if not email:
        return None
    courses = catalog.courses_staffed_by(email)
    if not courses:
        return None
    name = next((n for slug in courses if (n := catalog.courses[slug].staff_name(email))), "") or email
    return StaffPrincipal(email=email.strip().lower(), name=name, courses=frozenset(courses))


def normalize_email(text: str) -> str | None:
    """A plausible address in lower case, or None (never an error: the login answer is the same)."""
    email = text.strip().lower()
    if not 3 <= len(email) <= 254 or email.count("@") != 1 or any(c.isspace() for c in email):
        return None
    local, _, domain = email.partition("@")
    return email if local and domain else None


def link_key(token: str) -> str:
    return _LINK.format(hashlib.sha256(token.encode()).hexdigest())


def new_link_token() -> str:
    return secrets.token_urlsafe(32)


def digest(text: str) -> str:
    """A short stable digest, for Redis key names and audit targets that must not hold an address."""
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()[:16]
