"""The runtime's object graph, built once per process in the app's lifespan.

Each area contributes its part in ``build_services`` (store and bookings, events, speech and
sessions, media), and every part that needs cleaning up registers it there, so shutdown releases
what start-up made in reverse order. Route handlers reach it through ``services_of(request)``; nothing
is made lazily on a first request and nothing else is global. Tests pass ``Overrides`` to swap in a
store or a media hub (with its own session factory).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from runtime.settings import Settings

if TYPE_CHECKING:
    from runtime.bookings.service import BookingService
    from runtime.events.gateway import EventsGateway
    from runtime.media.routes import MediaHub
    from runtime.speech.failover import Failover
    from runtime.speech.model import SpeechModel
    from runtime.speech.session import SessionManager
    from runtime.staff_identity import CognitoStaffVerifier
    from runtime.stores.base import Store

log = logging.getLogger("runtime.services")


@dataclass(frozen=True, slots=True)
class Overrides:
    """Test and bench seams: objects to use instead of the ones ``build_services`` would make.

    ``media``: a hub with its own ``SessionFactory`` (an echo session instead of the speech core) or its own
    limits; the transports under test run exactly as in production around it.
    """

    store: Store | None = None
    media: MediaHub | None = None


@dataclass
class Services:
    settings: Settings
    staff_token: str | None
    session_secret: str
    store: Store
    bookings: BookingService
    staff_verifier: CognitoStaffVerifier | None  # when STAFF_AUTH=cognito
    gateway: EventsGateway | None = None  # the embedded events gateway (standalone); None in AWS mode
    # Set by build_services before it returns (the speech part needs the store and bookings made above).
    speech_model: SpeechModel = field(init=False)
    sessions: SessionManager = field(init=False)
    failover: Failover | None = None  # when SPEECH_FALLBACK_ENGINE is set
    media: MediaHub = field(init=False)  # live calls of both transports, their limits and session factory
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _warm_up: asyncio.Task[None] | None = None

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register cleanup; closers run in reverse order of registration."""
        self._closers.append(closer)

    def start_warm_up(self) -> None:
        """Load the speech engine's models in the background (once); readiness waits for it.

        Started by ``serve`` at start-up and by the first readiness probe otherwise, so a load balancer
        only routes callers to a process whose first call will not pay the model load. A configured
        fallback engine is loaded alongside, without holding up readiness (docs/failover.md).
        """
        if self.failover is not None:
            self.failover.warm_up()
        if self._warm_up is not None:
            return
        self._warm_up = asyncio.get_running_loop().create_task(self.speech_model.warm_up(), name="speech-warm-up")
        self._warm_up.add_done_callback(_log_warm_up_failure)

    async def ready(self) -> bool:
        if not await self.store.ready():
            return False
        if self.speech_model.ready:
            return True
        if self._warm_up is not None and self._warm_up.done() and self._warm_up.exception() is not None:
            self._warm_up = None  # failed: let the next probe try again
        self.start_warm_up()
        return False

    async def close(self) -> None:
        if self._warm_up is not None and not self._warm_up.done():
            self._warm_up.cancel()
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:
                log.exception("error during shutdown")
        self._closers.clear()


def _log_warm_up_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("speech engine warm-up failed", exc_info=task.exception())


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def build_services(settings: Settings, overrides: Overrides | None = None) -> Services:
    overrides = overrides or Overrides()
    staff_token = _secret(settings.staff_token)
    staff_verifier = None
    if settings.staff_auth == "cognito":  # docs/staff-sign-in.md: the shared token is refused everywhere
        from runtime.staff_identity import CognitoStaffVerifier

        if staff_token:
            log.warning("STAFF_AUTH=cognito: STAFF_TOKEN is set but ignored; staff sign in with Cognito")
        staff_token = None
        staff_verifier = CognitoStaffVerifier.from_settings(settings)
        await staff_verifier.prefetch()
    session_secret = _secret(settings.session_secret)
    if not session_secret:
        # One process only: tokens would not verify in other workers. `serve` sets a shared secret.
        session_secret = secrets.token_urlsafe(32)
        log.warning("SESSION_SECRET not set; generated a per-process secret")

    # --- foundation: store + booking service --------------------------------------------------
    from runtime.bookings.service import BookingService
    from runtime.stores.factory import make_store

    store = overrides.store or make_store(settings)
    await store.start()
    services = Services(settings=settings, staff_token=staff_token, session_secret=session_secret, store=store,
                        bookings=BookingService(store.bookings, settings), staff_verifier=staff_verifier)
    services.on_close(store.close)

    # --- events: embedded gateway fed by local change capture (standalone) ----------------------
    # In AWS mode (APPSYNC_ENDPOINT set) the DynamoDB streams + the stream-publisher Lambda publish every
    # change, so the runtime itself needs neither a gateway nor a publisher.
    if settings.appsync_endpoint is None:
        from runtime.events.gateway import EventsGateway
        from runtime.events.local_capture import attach as attach_capture

        gateway_options: dict[str, Any] = {"staff_token": staff_token, "session_secret": session_secret,
                                           "api_key": _secret(settings.appsync_api_key),
                                           **EventsGateway.options_from_settings(settings)}
        if staff_verifier is not None:
            from runtime.staff_identity import CognitoEventsGateway

            gateway: EventsGateway = CognitoEventsGateway(staff=staff_verifier, **gateway_options)
        else:
            gateway = EventsGateway(**gateway_options)
        services.gateway = gateway
        services.on_close(gateway.close)
        if settings.workers > 1:  # subscribers may sit in any worker: share events between them
            from runtime.events.relay import WorkerRelay, default_directory

            relay = WorkerRelay(default_directory(settings.data_dir, settings.port), gateway.deliver_from_sibling)
            try:
                await relay.start()
            except OSError:
                log.exception("events relay unavailable: subscribers see only their own worker's events")
            else:
                gateway.relay = relay
                services.on_close(relay.close)
        stop_capture = attach_capture(store, gateway)

        async def _stop_capture() -> None:
            stop_capture()

        services.on_close(_stop_capture)

    # --- speech: model + session manager --------------------------------------------------------
    from runtime.speech.factory import make_speech_model
    from runtime.speech.failover import make_failover
    from runtime.speech.session import SessionManager

    services.speech_model = make_speech_model(settings)
    services.on_close(services.speech_model.close)  # runs after the sessions below are closed
    services.failover = make_failover(settings)
    if services.failover is not None:
        services.on_close(services.failover.close)
    sessions = services.sessions = SessionManager(services.speech_model, services.bookings, store, settings,
                                                  session_secret=session_secret, failover=services.failover)
    services.on_close(lambda: sessions.close_all("shutdown"))

    # --- media: the calls of both transports ----------------------------------------------------
    from runtime.media import patches
    from runtime.media.routes import MediaHub

    patches.install()  # aiortc's audio-level function, replaced once per process (runtime/media/patches.py)
    services.media = overrides.media or MediaHub(session_factory=sessions)
    services.on_close(services.media.close_all)  # hangs up every call first, while its session can still end
    if settings.speech_warm_up:
        services.start_warm_up()
    return services


def services_of(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]
