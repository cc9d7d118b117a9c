"""The gateway's app factory. Nothing runs at import time; ``create_app(settings)`` builds everything.

``Services`` is opened once in the lifespan and handed to every handler that asks for
``services: Services`` (Litestar dependency injection). The job queue's UI (SAQ's, served through
litestar-saq's controller) lives at ``/staff/queue``, for the operator. Middleware, outermost first: the
request id, the rate limits (their counts live in Redis, through the Services' client), Litestar's
Prometheus request metrics, then the staff session (Litestar's server-side sessions in Redis, only under
``/staff``); Litestar's CSRF middleware guards state-changing ``/staff`` requests. Every staff route except
the login sits in one router behind ``staff_guard`` (``services/gateway/staff/auth.py``). The OpenAPI
schema is published at ``/schema`` (JSON; also ``/schema/openapi.json`` and ``/schema/openapi.yaml``).
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import saq
import structlog
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from litestar_saq.config import SAQConfig, TaskQueues
from litestar_saq.controllers import build_controller

from services.gateway.booked import ROUTES as BOOKED_ROUTES
from services.gateway.container import Services, open_services
from services.gateway.errors import PROBLEM_MAP
from services.gateway.health.routes import ROUTES as HEALTH_ROUTES
from services.gateway.intake.routes import ROUTES as INTAKE_ROUTES
from services.gateway.intake.warming import keep_courses_warm
from services.gateway.logs import configure_logging, drop_saq_enqueue_lines, request_id_middleware
from services.gateway.metrics import prometheus_config
from services.gateway.quality.routes import ROUTES as QUALITY_ROUTES
from services.gateway.ratelimit import STORE as RATE_LIMIT_STORE
from services.gateway.ratelimit import rate_limits
from services.gateway.staff import auth
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.gateway.staff.analytics import ROUTES as ANALYTICS_ROUTES
from services.gateway.staff.auth import operator_guard, staff_guard
from services.gateway.staff.login import ROUTES as LOGIN_ROUTES
from services.gateway.staff.operator import ROUTES as OPERATOR_ROUTES
from services.gateway.staff.routes import ROUTES as STAFF_ROUTES
from services.gateway.webhooks.routes import ROUTES as WEBHOOK_ROUTES
from services.settings import REPO_ROOT, Settings, SettingsError, load_settings

FRONTEND_DIR = REPO_ROOT / "frontend"
QUEUE_UI = "/staff/queue"  # under /staff, where the staff session cookie is sent
ServicesFactory = Callable[[Settings], Awaitable[Services]]
log = structlog.get_logger()


def provide_services(state: State) -> Services:
    return state.services  # type: ignore[no-any-return]


def provide_task_queues(state: State) -> TaskQueues:
    """The queues for litestar-saq's UI controller (it asks for ``task_queues``)."""
    return TaskQueues(queues=dict(state.services.jobs.queues))


def queue_ui() -> list[ControllerRouterHandler]:
    """SAQ's monitoring UI (queues, jobs, retry, abort), for a logged-in staff member only."""
    static = Path(saq.__file__).parent / "web" / "static"
    return [
        build_controller(QUEUE_UI, [operator_guard]),
        create_static_files_router(
            path=f"{QUEUE_UI}/static", directories=[static], guards=[operator_guard], include_in_schema=False
        ),
    ]


def create_app(settings: Settings, services_factory: ServicesFactory = open_services) -> Litestar:
    """Build the gateway. ``services_factory`` opens the shared clients at start-up."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = await services_factory(settings)
        app.state.services = services
        counts = RedisStore(services.redis, namespace="intake:ratelimit", handle_client_shutdown=False)
        app.stores.register(RATE_LIMIT_STORE, counts, allow_override=True)
        sessions = RedisStore(services.redis, namespace=auth.SESSION_NAMESPACE, handle_client_shutdown=False)
        app.stores.register(auth.SESSION_STORE, sessions, allow_override=True)
        _private_data_dir(settings)
        for problem in services.catalog.problems:
            log.warning("course_pack_rejected", problem=str(problem))
        log.info("gateway_started", courses=sorted(services.catalog.courses), port=settings.port)
        warming = asyncio.create_task(keep_courses_warm(services))  # each course's prompt prefix, cached
        try:
            yield
        finally:
            warming.cancel()
            await services.aclose()

    with warnings.catch_warnings():
        # litestar-saq's controller asks for ``task_queues`` by name only (deprecated in Litestar 2.23)
        warnings.filterwarnings("ignore", message=".*Inferred dependency field 'task_queues'")
        return _litestar(settings, lifespan)


def _private_data_dir(settings: Settings) -> None:
    """``.data`` holds transcripts in mail files: readable by the operator's account only (0700)."""
    settings.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_path.chmod(0o700)


def staff_router() -> Router:
    """Every staff route but the login, behind ``staff_guard`` (a session, and the course permission)."""
    return Router(
        path="/", route_handlers=[*STAFF_ROUTES, *OPERATOR_ROUTES, *queue_ui()], guards=[staff_guard]
    )


def _litestar(
    settings: Settings, lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]
) -> Litestar:
    secret = settings.session_secret.encode() or secrets.token_bytes(32)
    return Litestar(
        route_handlers=[
            *HEALTH_ROUTES,
            *WEBHOOK_ROUTES,
            *INTAKE_ROUTES,
            *QUALITY_ROUTES,
            *BOOKED_ROUTES,
            *LOGIN_ROUTES,
            staff_router(),
            Router(path="/", route_handlers=ANALYTICS_ROUTES, guards=[staff_guard]),
            create_static_files_router(path="/static", directories=[FRONTEND_DIR], name="static"),
        ],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "task_queues": Provide(provide_task_queues, sync_to_thread=False),
            "principal": Provide(auth.provide_principal, sync_to_thread=False),
            "staff_intake": Provide(auth.provide_staff_intake, sync_to_thread=False),
        },
        signature_namespace={
            "Services": Services,
            "StaffPrincipal": StaffPrincipal,
            "StaffIntake": StaffIntake,
            **SAQConfig().signature_namespace,
        },
        lifespan=[lifespan],
        exception_handlers={auth.LoginRequired: auth.login_redirect},
        csrf_config=auth.csrf_config(settings, secret),
        # a refusal raised by a limiter is rendered outside the Prometheus middleware (which would count
        # it as a 200), so limiters go first and count their refusals themselves (intake_rate_limited)
        middleware=[
            request_id_middleware,
            *rate_limits(settings),
            prometheus_config().middleware,
            auth.session_config(settings).middleware,
        ],
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    enable_for_all_http_exceptions=True, exception_to_problem_detail_map=PROBLEM_MAP
                )
            )
        ],
        cors_config=CORSConfig(allow_origins=[]),
        request_max_body_size=max(settings.max_webhook_bytes, 64 * 1024),
        openapi_config=openapi_config(),
        debug=False,
    )


def openapi_config() -> OpenAPIConfig:
    """The schema as JSON at ``/schema`` (and YAML): no documentation UI that loads scripts from a CDN."""
    return OpenAPIConfig(
        title="Office Hours Intake gateway",
        version="1",
        path="/schema",
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"]), YamlRenderPlugin()],
    )


# uvicorn by default believes X-Forwarded-For from loopback and rewrites the client address with it: behind
# the tunnel (a loopback connection) any client could then pick the address its rate limits count against.
# ``peers`` reads the tunnel's own header itself, so the server passes the connection's address as it is.
SERVER_OPTIONS: dict[str, Any] = {"log_config": None, "access_log": False, "proxy_headers": False}


def main() -> None:
    """``python -m services.gateway.app``: serve with uvicorn on INTAKE_HOST:INTAKE_PORT."""
    import uvicorn

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"gateway: configuration error: {exc}") from None
    configure_logging(settings.log_level)
    drop_saq_enqueue_lines()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
