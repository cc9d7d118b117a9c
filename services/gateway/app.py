"""The gateway's app factory. Nothing runs at import time; ``create_app(settings)`` builds everything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin
from litestar.static_files import create_static_files_router

from services.gateway.container import Services, open_services
from services.gateway.health.routes import ROUTES as HEALTH_ROUTES
from services.gateway.intake.routes import ROUTES as INTAKE_ROUTES
from services.gateway.logs import configure_logging, request_id_middleware
from services.gateway.staff.routes import ROUTES as STAFF_ROUTES
from services.gateway.webhooks.routes import ROUTES as WEBHOOK_ROUTES
from services.settings import REPO_ROOT, Settings, SettingsError, load_settings

FRONTEND_DIR = REPO_ROOT / "frontend"
ServicesFactory = Callable[[Settings], Awaitable[Services]]
log = structlog.get_logger()


def create_app(settings: Settings, services_factory: ServicesFactory = open_services) -> Litestar:
    """Build the gateway. ``services_factory`` opens the shared clients at start-up."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = await services_factory(settings)
        app.state.services = services
        for problem in services.catalog.problems:
            log.warning("course_pack_rejected", problem=str(problem))
        log.info("gateway_started", courses=sorted(services.catalog.courses), port=settings.port)
        try:
            yield
        finally:
            await services.aclose()

    return Litestar(
        route_handlers=[
            *HEALTH_ROUTES,
            *WEBHOOK_ROUTES,
            *INTAKE_ROUTES,
            *STAFF_ROUTES,
            create_static_files_router(path="/static", directories=[FRONTEND_DIR], name="static"),
        ],
        lifespan=[lifespan],
        middleware=[request_id_middleware],
        plugins=[ProblemDetailsPlugin(ProblemDetailsConfig(enable_for_all_http_exceptions=True))],
        cors_config=CORSConfig(allow_origins=[]),
        request_max_body_size=max(settings.max_webhook_bytes, 64 * 1024),
        openapi_config=None,
        debug=False,
    )


def main() -> None:
    """``python -m services.gateway.app``: serve with uvicorn on INTAKE_HOST:INTAKE_PORT."""
    import uvicorn

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"gateway: configuration error: {exc}") from None
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
