"""Prometheus metrics shared by every area of the runtime.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``serve --workers`` does) so
``/metrics`` aggregates all workers instead of showing whichever one answered.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
HTTP_LATENCY = Histogram("http_request_seconds", "HTTP request latency", ["route"])
SESSIONS_ACTIVE = Gauge("voice_sessions_active", "Voice sessions in progress", ["transport"],
                        multiprocess_mode="livesum")
SESSIONS_TOTAL = Counter("voice_sessions_total", "Voice sessions started", ["transport", "engine"])
BOOKINGS = Counter("bookings_total", "Booking operations", ["operation", "outcome"])
RESPONSE_LATENCY = Histogram(
    "voice_response_latency_seconds", "End of user speech to first assistant audio",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0),
)
# What the guest heard, measured by the caller (the web app or a benchmark caller) and reported on the call:
# end of the guest's voiced speech -> first non-silent assistant sample at the caller's ear. The server-side
# figure above starts later (when the server learns the speech ended) and stops earlier (before transport).
CALLER_RESPONSE_LATENCY = Histogram(
    "voice_caller_response_seconds", "End of the guest's speech to first assistant sound, measured by the caller",
    ["transport", "engine"], buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0),
)
MODEL_TOKENS = Counter("speech_model_tokens_total", "Tokens reported by the speech model", ["direction", "kind"])
SPEECH_FAILOVERS = Counter("speech_failovers_total", "Sessions moved to the fallback engine (docs/failover.md)",
                           ["reason"])
SPEECH_BREAKER_TRANSITIONS = Counter("speech_breaker_transitions_total",
                                     "Nova Sonic circuit-breaker state changes", ["state"])
TURN_WRITE_FAILURES = Counter("conversation_turn_write_failures_total",
                              "Turn writes the store refused (each is retried)", ["outcome"])
EVENTS_PUBLISHED = Counter("events_published_total", "Real-time events published", ["namespace"])


def render() -> bytes:
    """Prometheus text exposition of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
