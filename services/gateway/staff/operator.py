"""The operator's pages: the audit log, and a student's data exported or deleted (``/staff/privacy``).

Operator only (the password login): ``operator_guard`` on every route, under the staff router's
``staff_guard``. A course's staff get 403.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from msgspec import Meta

from services.gateway import privacy
from services.gateway.container import Services
from services.gateway.errors import Forbidden, Unauthorized, Unprocessable, problems
from services.gateway.intake import chat
from services.gateway.staff import auth
from services.gateway.staff.accounts import StaffPrincipal, normalize_email
from services.gateway.staff.audit import AuditEntry, audit, entries
from services.gateway.staff.login import PAGE_HEADERS
from services.settings import REPO_ROOT

PAGE = REPO_ROOT / "frontend" / "staff" / "privacy.html"
GUARD = [auth.operator_guard]
_API = problems(Unauthorized, Forbidden, Unprocessable)
_NO_STORE = {"Cache-Control": "no-store"}
log = structlog.get_logger()


class StudentIn(msgspec.Struct, frozen=True):
    email: Annotated[str, Meta(max_length=254)]


@get("/staff/api/audit", guards=GUARD, responses=_API)
async def audit_log(
    services: NamedDependency[Services],
    limit: Annotated[int, Meta(ge=1, le=1000)] = 200,
    actor: Annotated[str | None, Meta(max_length=254)] = None,
) -> Response[list[AuditEntry]]:
    """Staff actions, newest first (optionally one person's)."""
    return Response(await entries(services, limit=limit, actor=actor), headers=_NO_STORE)


@post("/staff/api/privacy/export", guards=GUARD, status_code=200, responses=_API)
async def export_student(
    request: Request, principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> Response[dict[str, Any]]:
    """Everything held about one student's address, as one JSON document (a download)."""
    email = await _email(request)
    document = await privacy.export_student(services, email)
    await audit(services, principal.actor, "export", privacy.audit_target(email))
    headers = {**_NO_STORE, "Content-Disposition": 'attachment; filename="student-data.json"'}
    return Response(document, headers=headers)


@post("/staff/api/privacy/delete", guards=GUARD, status_code=200, responses=_API)
async def delete_student(
    request: Request, principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> Response[privacy.PrivacyReport]:
    """Delete everything held about one student's address (intakes, jobs, snapshots, mail files)."""
    email = await _email(request)
    report = await privacy.delete_student(services, email)
    await audit(services, principal.actor, "delete", privacy.audit_target(email))
    return Response(report, headers=_NO_STORE)


@get("/staff/privacy", guards=GUARD, media_type=MediaType.HTML, include_in_schema=False)
async def privacy_page(services: NamedDependency[Services]) -> Response[bytes]:
    """The operator's page: export or delete a student's data, and the latest audit entries."""
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(v)}</td>" for v in (e.at, e.actor, e.action, e.target, e.course))
        + "</tr>"
        for e in await entries(services, limit=100)
    )
    page = PAGE.read_text(encoding="utf-8").replace(
        "{{audit_rows}}", rows or '<tr><td colspan="5">Nothing yet.</td></tr>'
    )
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


async def _email(request: Request) -> str:
    body = chat.decode_body(await chat.read_capped(request, 2048), StudentIn)
    email = normalize_email(body.email)
    if email is None:
        raise Unprocessable("Give the student's email address.")
    return email


ROUTES = [audit_log, export_student, delete_student, privacy_page]
