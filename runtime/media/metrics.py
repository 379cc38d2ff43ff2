"""Media-level Prometheus metrics (served by ``GET /metrics`` with the rest of the runtime's).

Label values come from small fixed sets (transport, end reason, close code) so cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import Counter

CALLS_ENDED = Counter("media_calls_ended_total", "Calls ended, by transport and why", ["transport", "reason"])
OFFERS_REJECTED = Counter("media_offers_rejected_total", "Offers refused before a call started", ["code"])
RTP_LOST = Counter("media_rtp_packets_lost_total", "Caller RTP packets that never arrived (skipped, not waited for)")
RTP_LATE = Counter("media_rtp_packets_late_total", "Caller RTP packets that arrived after a later one was played")
