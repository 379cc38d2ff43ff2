"""Starlette application factory: routes of every area, middleware, lifespan.

``create_app`` is what uvicorn loads (``factory=True``) in each worker process. Areas expose
``routes() -> list[BaseRoute]`` from their module; the list below is the whole HTTP surface.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from runtime import http_timeouts
from runtime.api import bookings as bookings_api
from runtime.api import config as config_api
from runtime.api import conversations as conversations_api
from runtime.api import health
from runtime.errors import EXCEPTION_HANDLERS
from runtime.events import gateway as events_gateway
from runtime.log import configure_logging
from runtime.media import routes as media_routes
from runtime.middleware import BodyLimitMiddleware, MetricsMiddleware, SecurityHeadersMiddleware
from runtime.services import Overrides, build_services, services_of
from runtime.settings import Settings, load_settings

log = logging.getLogger("runtime.app")

ROOT = Path(__file__).resolve().parent.parent
EVENT_PUBLISH_MAX_BYTES = 1_300_000  # AppSync Events: 5 events x 240 KB, 1.2 MB per publish request


def _route_modules() -> list[list[BaseRoute]]:
    return [
        health.routes(),
        bookings_api.routes(),
        conversations_api.routes(),
        events_gateway.routes(lambda conn: services_of(conn).gateway),
        config_api.routes(),
        media_routes.routes(),
    ]


class _FallbackMount(Mount):
    """A mount that only takes what no other route matches in full.

    Starlette's router takes the first FULL match; a route whose path matches but whose methods do not is a
    PARTIAL match, answered with its 405 and ``Allow`` only when no route matches in full. A ``Mount("/")``
    matches every path in full, so ``OPTIONS /api/webrtc/offer`` went to the static files (405 with
    ``Allow: GET, HEAD``). Reported as PARTIAL and placed last, the web app still serves every path no
    route knows, and a wrong method on an API path gets that route's own 405.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        return (Match.PARTIAL if match is Match.FULL else match), child_scope


def _webapp_mount(settings: Settings) -> list[BaseRoute]:
    directory = settings.webapp_dir or ROOT / "webapp" / "dist"
    if (directory / "index.html").is_file():
        return [_FallbackMount("/", app=StaticFiles(directory=directory, html=True), name="webapp")]
    log.warning("web app not built (no %s); serving the API only", directory / "index.html")
    return []


def create_app(settings: Settings | None = None, overrides: Overrides | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if os.environ.get("RUNTIME_JSON_LOGS") == "1":
            configure_logging(settings.log_level)  # worker processes start with bare logging
        services = await build_services(settings, overrides)
        app.state.services = services
        log.info("runtime ready", extra={"store": settings.store, "engine": settings.speech_engine})
        try:
            yield
        finally:
            log.info("shutting down: releasing sessions and stores")
            await services.close()

    # The protocol `serve` runs (runtime/http_timeouts.py) reads this worker's read timeouts from here.
    http_timeouts.configure(header_seconds=settings.header_read_timeout_seconds,
                            body_seconds=settings.body_read_timeout_seconds)
    routes: list[BaseRoute] = [r for group in _route_modules() for r in group]
    routes += _webapp_mount(settings)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware),
            Middleware(SecurityHeadersMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       path_limits={"/event": EVENT_PUBLISH_MAX_BYTES},
                       body_timeout=settings.body_read_timeout_seconds),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
