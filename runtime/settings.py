"""Runtime configuration, read once from the environment.

Every variable is documented in the README's configuration table; keep the two in step. Names that the
AWS deployment seeds (``BOOKING_TABLE``, ``APPSYNC_ENDPOINT``, ...) are read without a prefix so the
platform code and the container agree without a translation layer.
"""

from __future__ import annotations

import json
import os
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Settings(BaseSettings):
    """All knobs of the runtime. Defaults give the standalone mode: offline engine + SQLite."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- serving -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(default_factory=_cpu_count, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest accepted HTTP request body")
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=300)
    keep_alive_seconds: int = Field(
        3615, ge=1, le=7200,
        description="idle HTTP keep-alive; must exceed the load balancer's idle timeout (the ALB's is 3600 s) "
                    "so the load balancer, never the runtime, closes idle connections (else sporadic 502s)")
    # Slow clients (runtime/http_timeouts.py; docs/public-limits.md). Not the keep-alive above: these bound
    # reading one request, the keep-alive bounds the idle time between requests.
    header_read_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="longest a client may take to send a request's head (from connecting, or "
        "from the first byte of the next request); then 408 and the connection closes (slow-loris)")
    body_read_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="longest from a request's head to the last byte of its body; then 408 and "
        "the connection closes")
    ecs_agent_uri: str | None = Field(
        None, description="injected by ECS into tasks; turns on task scale-in protection while calls are in progress")
    task_protection_minutes: int = Field(
        60, ge=1, le=2880, description="how long one ECS task-protection update lasts (renewed at half of it)")
    task_protection_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="how often the calls-in-progress count is checked for task protection")
    webapp_dir: Path | None = Field(None, description="built web app to serve at /; default webapp/dist")
    data_dir: Path = Path("var")
    trust_proxy_headers: bool = Field(False, description="take the client address from X-Forwarded-For (ALB)")
    public_origin: str | None = Field(
        None, pattern=r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$",
        description="the site's public origin, e.g. https://book.example.com: /api/config builds the events URLs "
        "from it (behind CloudFront/ALB); unset: from the request's Host header, never from X-Forwarded-Host")
    trusted_proxy_hops: int = Field(
        1, ge=1, le=5, description="proxies in front that append to X-Forwarded-For (the ALB alone: 1); the "
        "client is this many entries from the right, entries further left are the client's own (docs/abuse-limits.md)")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra page origins allowed to open /ws/audio (same origin always is)")

    # --- credentials ---------------------------------------------------------------------------
    staff_token: SecretStr | None = Field(None, description="bearer token for staff endpoints")
    session_secret: SecretStr | None = Field(
        None, description="HMAC key for guest session tokens; must be shared by all workers/hosts"
    )
    session_ttl_seconds: int = Field(4 * 3600, ge=60)
    # Staff sign-in (docs/staff-sign-in.md). `token`: staff paste STAFF_TOKEN (standalone). `cognito`: staff
    # sign in to an Amazon Cognito user pool and every staff API and subscription takes their JWT instead.
    staff_auth: Literal["token", "cognito"] = Field(
        "token", description="how staff prove who they are: the shared STAFF_TOKEN, or Amazon Cognito user-pool JWTs")
    cognito_user_pool_id: str | None = Field(
        None, pattern=r"^[\w-]+_[0-9a-zA-Z]+$", description="staff user pool (STAFF_AUTH=cognito)")
    cognito_client_id: str | None = Field(
        None, pattern=r"^[\w+]+$", description="the web app's public app client of the staff user pool")
    cognito_region: str | None = Field(
        None, description="region of the user pool; default: the prefix of COGNITO_USER_POOL_ID")
    cognito_staff_group: str = Field("staff", min_length=1, description="user-pool group a staff user must be in")
    cognito_endpoint_url: str | None = Field(
        None, description="Cognito user-pools endpoint for the runtime and the web app; default the public "
        "https://cognito-idp.<region>.amazonaws.com/ (set only for a local stand-in)")

    # --- restaurant rules ----------------------------------------------------------------------
    restaurant_name: str = "Nova Bistro"
    restaurant_phone: str | None = Field(
        None, max_length=40, description="phone number the assistant gives a guest whom a booking limit refuses "
        "(read out as written); unset: it says to call the restaurant")
    restaurant_timezone: str = "UTC"
    opening_time: time = time(11, 0)
    closing_time: time = time(22, 0)  # last bookable slot starts strictly before this
    slot_minutes: int = Field(30, ge=5, le=240)
    seats_per_slot: int = Field(40, ge=1, le=10_000)
    max_party_size: int = Field(20, ge=1, le=100)
    booking_horizon_days: int = Field(180, ge=1, le=3650)
    # Booking abuse limits (docs/abuse-limits.md): what one client - an address (IPv6: its /64) and, for a
    # voice call, the call's session - may hold in confirmed future bookings, shared by all workers and hosts.
    # 0 turns a limit off. Staff bookings are not limited.
    booking_limit_per_slot: int = Field(
        1, ge=0, le=1000, description="confirmed bookings one client may hold in one time slot")
    booking_limit_per_day: int = Field(
        2, ge=0, le=1000, description="confirmed bookings one client may hold on one date")
    booking_limit_seats: int = Field(
        30, ge=0, le=100_000, description="guests one client may hold in all its confirmed bookings that have "
        "not started yet; at least MAX_PARTY_SIZE")

    # --- storage -------------------------------------------------------------------------------
    store: Literal["sqlite", "dynamodb"] = "sqlite"
    sqlite_path: Path | None = Field(None, description="default: <data_dir>/concierge.db")
    booking_table: str = "RestaurantBookings"
    chat_history_table: str = "NovaSonicConversations"
    session_table: str = "NovaSonicSessions"
    conversation_retention_days: int = Field(90, ge=1)
    aws_region: str = Field("us-east-1", validation_alias="AWS_REGION")

    # --- speech ---------------------------------------------------------------------------------
    speech_engine: Literal["local", "nova-sonic"] = "local"
    bedrock_region: str = "us-east-1"
    nova_sonic_model_id: str = "amazon.nova-2-sonic-v1:0"
    voice_id: str = "matthew"
    endpointing_sensitivity: Literal["HIGH", "MEDIUM", "LOW"] = "MEDIUM"
    max_sessions_per_process: int = Field(
        12, ge=1, le=1000, description="calls one process takes at once; derived from bench/rtc_sessions.py: one "
        "call's media costs ~6% of the event loop's one core on this 2-core machine, and 0.7 core / 0.06 = 12 "
        "(docs/architecture.md, \"Delay under load\"); a process whose event loop runs late refuses sooner "
        "(runtime/media/load.py)")
    # Call limits (docs/public-limits.md): no line is held by a silent or endless caller.
    call_idle_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="no voiced audio from the guest for this long: the assistant says goodbye "
        "and hangs up (the page gets status ended, reason idle)")
    call_max_seconds: float = Field(
        1200.0, gt=0, le=14400, description="longest call; the guest is warned CALL_MAX_WARNING_SECONDS before, then "
        "the assistant says goodbye and hangs up (reason max_duration)")
    call_max_warning_seconds: float = Field(
        60.0, ge=0, le=3600, description="how long before CALL_MAX_SECONDS the guest is told the call will end")
    max_calls_per_client: int = Field(
        3, ge=1, le=1000, description="concurrent calls one client address may hold in one worker, both "
        "transports together; more get 429")
    speech_warm_up: bool = Field(False, description="load speech models at start-up (`serve` turns it on)")
    speech_greet_first: bool = Field(
        True, description="Nova Sonic greets the guest in the restaurant's name when a call starts, asked with a "
        "cross-modal text prompt (docs/greeting.md); the offline engine always greets by itself")
    # Nova Sonic closes a stream after 8 minutes: open the next one ahead of time and hand over at a turn
    # boundary after `renew_after`, forcing the handover by `renew_deadline` even mid-reply.
    speech_renew_after_seconds: float = Field(450.0, gt=0)
    speech_renew_deadline_seconds: float = Field(470.0, gt=0)
    speech_max_attempts: int = Field(4, ge=1, le=20, description="stream (re)opens per fault before giving up")
    # Every wait on the model is bounded (docs/credentials-and-deadlines.md): with the defaults a guest whose
    # call cannot be connected, or whose stream dies and cannot be reopened, is told within 13 s.
    speech_give_up_seconds: float = Field(
        12.0, gt=0, le=60, description="longest the session keeps trying to (re)connect a stream before the "
        "guest gets the error message, counted from the call's start or the failure")
    speech_connect_timeout_seconds: float = Field(
        4.0, gt=0, le=60, description="TCP+TLS connect to Bedrock, and the SDK handing back a new stream")
    speech_response_timeout_seconds: float = Field(
        6.0, gt=0, le=60, description="wait for Bedrock's response headers on a new stream (proves endpoint, "
        "TLS and signature)")
    aws_credentials_timeout_seconds: float = Field(
        4.0, gt=0, le=60, description="one credential resolution or refresh (container endpoint, IMDS, SSO...)")

    # Engine failover (docs/failover.md): when Nova Sonic cannot give a session a stream within the bounds
    # above, the session goes on with the offline engine; a circuit breaker sends new sessions straight to it
    # for a cool-down after repeated refusals, then lets one probe session try Nova Sonic again.
    speech_fallback_engine: Literal["local"] | None = Field(
        None, description="engine a Nova Sonic session fails over to when no stream can be (re)opened; "
        "unset: the guest gets the error message")
    speech_breaker_failures: int = Field(
        3, ge=1, le=1000, description="sessions refused a Nova Sonic stream within the window that open the "
        "circuit breaker")
    speech_breaker_window_seconds: float = Field(
        60.0, gt=0, le=3600, description="window in which refused sessions are counted for the breaker")
    speech_breaker_cooldown_seconds: float = Field(
        30.0, gt=0, le=3600, description="how long an open breaker sends new sessions straight to the fallback "
        "engine before one probe session tries Nova Sonic again")

    # --- real-time events -----------------------------------------------------------------------
    appsync_endpoint: str | None = Field(None, description="AppSync Events HTTP endpoint (cloud mode)")
    appsync_realtime_endpoint: str | None = None
    appsync_api_key: SecretStr | None = None
    # Embedded gateway's caps (standalone; docs/events-gateway.md). Per worker process, like its sockets.
    events_max_subscriptions_per_connection: int = Field(
        100, ge=1, le=1000, description="subscriptions one gateway socket may hold (AppSync's quota is 100); "
        "the next gets subscribe_error LimitExceededException")
    events_max_connections_per_guest: int = Field(
        4, ge=1, le=1000, description="gateway sockets open at once with one guest session's token (a page "
        "needs one); the next gets connection_error LimitExceededException")
    events_max_connections_per_staff_credential: int = Field(
        32, ge=1, le=10000, description="gateway sockets open at once with one staff credential (with the "
        "shared STAFF_TOKEN: all staff screens together)")
    events_max_connections_per_client: int = Field(
        64, ge=1, le=100000, description="gateway sockets open at once from one client address (the address "
        "the limits use, see TRUSTED_PROXY_HOPS)")

    # --- media / TURN ---------------------------------------------------------------------------
    turn_secret: SecretStr | None = None
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_ttl_seconds: int = Field(3600, ge=60, le=86400)
    stun_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("turn_urls", "stun_urls", "allowed_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("speech_fallback_engine", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (a template's "SPEECH_FALLBACK_ENGINE=") means no fallback, not a typo.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("restaurant_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check_hours(self) -> Settings:
        if self.closing_time <= self.opening_time:
            raise ValueError("CLOSING_TIME must be after OPENING_TIME")
        if self.staff_auth == "cognito" and not (self.cognito_user_pool_id and self.cognito_client_id):
            raise ValueError("STAFF_AUTH=cognito needs COGNITO_USER_POOL_ID and COGNITO_CLIENT_ID")
        if 0 < self.booking_limit_seats < self.max_party_size:
            raise ValueError("BOOKING_LIMIT_SEATS must be 0 (off) or at least MAX_PARTY_SIZE")
        if self.speech_renew_deadline_seconds < self.speech_renew_after_seconds:
            raise ValueError("SPEECH_RENEW_DEADLINE_SECONDS must not be before SPEECH_RENEW_AFTER_SECONDS")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.restaurant_timezone)

    @property
    def cognito_pool_region(self) -> str | None:
        """The user pool's region: COGNITO_REGION, else the pool id's prefix (``eu-west-1_AbC...``)."""
        if self.cognito_region:
            return self.cognito_region
        return self.cognito_user_pool_id.split("_", 1)[0] if self.cognito_user_pool_id else None

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "concierge.db"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
