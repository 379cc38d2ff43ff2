"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from runtime import __version__, metrics
from runtime.services import services_of

_SCHEMAS = SchemaGenerator({
    "openapi": "3.1.0",
    "info": {"title": "Nova concierge runtime", "version": __version__,
             "description": "Voice booking assistant: signaling, bookings, conversations, events."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
})


async def healthz(request: Request) -> JSONResponse:
    """Process is alive.
    ---
    summary: Liveness probe
    responses:
      200: {description: '{"status":"ok"}'}
    """
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Stores and speech engine are ready to serve.
    ---
    summary: Readiness probe (load balancer health check)
    responses:
      200: {description: ready}
      503: {description: 'not ready yet, or shutting down'}
    """
    if not await services_of(request).ready():  # the app serves no request before its services are built
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def prometheus(request: Request) -> Response:
    """Prometheus metrics.
    ---
    summary: Prometheus text exposition
    responses:
      200: {description: metrics}
    """
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> JSONResponse:
    """This document.
    ---
    summary: OpenAPI 3.1 description of the HTTP API
    responses:
      200: {description: the document}
    """
    return JSONResponse(_SCHEMAS.get_schema(routes=request.app.routes))


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
