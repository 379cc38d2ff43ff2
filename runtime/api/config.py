"""``GET /api/config``: everything the web app needs to place a call and follow events.

TURN credentials are minted per request and short-lived (coturn REST scheme), and when TURN is
configured the browser is told to use only relayed candidates: in the deployed stack the runtime has no
public address, so a direct path could never work and trying it only slows call set-up.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from runtime.media.turn import ice_servers
from runtime.settings import Settings
from runtime.speech.voices import default_voice, voices_for


def _origin(request: Request, settings: Settings) -> tuple[str, str]:
    """(scheme, host[:port]) of the site: ``PUBLIC_ORIGIN`` when configured, else what the browser used.

    ``X-Forwarded-Host`` is never taken: any client can write it, and it would put an attacker's host into
    the events URLs a page connects to (issue 17). Behind CloudFront/ALB set ``PUBLIC_ORIGIN``; without it
    the Host header is used, with ``X-Forwarded-Proto`` only when proxy headers are trusted.
    """
    if settings.public_origin:
        scheme, _, host = settings.public_origin.partition("://")
        return scheme, host
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    if settings.trust_proxy_headers:
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
    return scheme, host


def staff_auth(settings: Settings) -> dict[str, str | None]:
    """How the staff view signs in (docs/staff-sign-in.md): paste the staff token, or SRP against the pool."""
    if settings.staff_auth != "cognito":
        return {"mode": "token"}
    return {"mode": "cognito", "region": settings.cognito_pool_region, "userPoolId": settings.cognito_user_pool_id,
            "clientId": settings.cognito_client_id, "endpoint": settings.cognito_endpoint_url,
            "group": settings.cognito_staff_group}


def events_endpoints(request: Request, settings: Settings) -> dict[str, str]:
    if settings.appsync_endpoint:
        http = settings.appsync_endpoint.rstrip("/")
        if not http.startswith(("https://", "http://")):
            http = f"https://{http}"
        if not http.endswith("/event"):
            http += "/event"
        realtime = settings.appsync_realtime_endpoint
        if realtime:
            realtime = realtime.rstrip("/")
            if not realtime.startswith(("wss://", "ws://")):
                realtime = f"wss://{realtime}"
            if not realtime.endswith("/event/realtime"):
                realtime += "/event/realtime"
        else:
            realtime = http.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
            realtime = realtime.replace(".appsync-api.", ".appsync-realtime-api.") + "/realtime"
        return {"http": http, "realtime": realtime, "auth": "authorization"}
    scheme, host = _origin(request, settings)
    ws_scheme = "wss" if scheme == "https" else "ws"
    return {"http": f"{scheme}://{host}/event", "realtime": f"{ws_scheme}://{host}/event/realtime",
            "auth": "authorization"}


async def get_config(request: Request) -> JSONResponse:
    """What the web app needs to start a call.
    ---
    summary: Client configuration (ICE servers, events endpoints, engine, voices, transports, staff sign-in)
    responses:
      200: {description: configuration object}
    """
    settings: Settings = request.app.state.settings
    turn_secret = settings.turn_secret.get_secret_value() if settings.turn_secret else None
    servers = ice_servers(stun_urls=settings.stun_urls, turn_urls=settings.turn_urls, turn_secret=turn_secret,
                          user_id=secrets.token_hex(8), ttl_seconds=settings.turn_ttl_seconds)
    relay = bool(turn_secret and settings.turn_urls)
    voices = voices_for(settings.speech_engine)
    body = {
        "iceServers": servers,
        "iceTransportPolicy": "relay" if relay else "all",
        "events": events_endpoints(request, settings),
        "engine": settings.speech_engine,
        "voices": voices,
        "voice": default_voice(settings.speech_engine, settings.voice_id),
        "transports": ["webrtc", "websocket"],
        "restaurant": {"name": settings.restaurant_name, "timeZone": settings.restaurant_timezone},
        "staffAuth": staff_auth(settings),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def routes() -> list[BaseRoute]:
    return [Route("/api/config", get_config, methods=["GET"])]
