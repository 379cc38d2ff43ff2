"""Chat history replayed into a fresh model stream on renewal or recovery (reference §1.5).

Nova Sonic accepts history once, after the system prompt and before audio, with these limits: at most
40 KB in total, at most 1 KB per ``textInput`` (longer messages are split into several textInputs of
the same content block), the first message from USER, and roles alternating. Older turns are dropped
first, because the recent ones carry the booking in progress.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_TOTAL_BYTES = 40_000
MAX_CHUNK_BYTES = 1_000  # under 1 KB with headroom for the JSON escaping the service counts


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    role: str  # "USER" | "ASSISTANT"
    chunks: tuple[str, ...]  # each at most MAX_CHUNK_BYTES of UTF-8

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def size(self) -> int:
        return sum(len(chunk.encode()) for chunk in self.chunks)


def split_utf8(text: str, limit: int = MAX_CHUNK_BYTES) -> list[str]:
    """Split into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode())
        if size + width > limit and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current:
        pieces.append("".join(current))
    return pieces


def _merged(turns: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        text = text.strip()
        if role not in ("USER", "ASSISTANT") or not text:
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]} {text}")
        else:
            merged.append((role, text))
    return merged


def build_history(turns: Iterable[tuple[str, str]], *, max_total: int = MAX_TOTAL_BYTES,
                  max_chunk: int = MAX_CHUNK_BYTES, lead_in: str | None = None) -> list[HistoryMessage]:
    """Normalise (role, text) turns, oldest first, into messages the service accepts.

    Keeps the most recent messages that fit in ``max_total`` bytes; a single message larger than the
    whole budget keeps only its tail. The result starts with USER and alternates roles.

    ``lead_in``: a conversation the assistant opened (it greeted first, docs/greeting.md) starts with an
    ASSISTANT message, which the service refuses as the first of a history. With a lead-in, that opening
    message is kept behind a USER message holding ``lead_in`` instead of being dropped; without one (or
    once trimming has cut the opening), leading ASSISTANT messages are dropped as before.
    """
    merged = _merged(turns)
    if lead_in and lead_in.strip() and merged and merged[0][0] == "ASSISTANT":
        merged.insert(0, ("USER", lead_in.strip()))
    kept: list[tuple[str, str]] = []
    budget = max_total
    for role, text in reversed(merged):
        size = len(text.encode())
        if size > budget:
            if not kept and budget > 0:
                # The newest message alone exceeds the budget: keep its most recent part.
                tail = text.encode()[-budget:].decode(errors="ignore")
                kept.append((role, tail))
            break
        kept.append((role, text))
        budget -= size
    kept.reverse()
    while kept and kept[0][0] != "USER":
        kept.pop(0)
    return [HistoryMessage(role, tuple(split_utf8(text, max_chunk))) for role, text in kept]
