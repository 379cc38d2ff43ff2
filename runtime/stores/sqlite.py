"""SQLite store for standalone mode: one file, WAL, safe for many asyncio tasks and several workers.

Concurrency model: every statement of this process runs on ONE dedicated thread that owns ONE
connection (a single-worker executor), so tasks never share a cursor and the event loop never blocks
on disk. Writes that must be atomic (capacity + idempotency, turn sequence numbers, cancel) run as
``BEGIN IMMEDIATE`` transactions, which take SQLite's write lock up front: other *processes* using the
same file (``serve --workers N``) wait on ``busy_timeout`` instead of interleaving a read-check-write.

Listeners are awaited on the event loop after the transaction has committed, and only for writes that
changed something (a replayed idempotency key or duplicate turn id emits nothing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from runtime.stores.base import (
    Booking,
    BookingNotFound,
    CapacityExceeded,
    Change,
    ChangeListener,
    HolderLimits,
    Holding,
    IdempotencyMismatch,
    Role,
    SessionRecord,
    Turn,
    check_holder_limits,
)
from runtime.stores.listeners import Listeners

log = logging.getLogger("runtime.stores.sqlite")
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    booking_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    date TEXT NOT NULL,
    hour TEXT NOT NULL,
    num_guests INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    session_id TEXT,
    cancellation_reason TEXT,
    cancelled_at TEXT
);
CREATE INDEX IF NOT EXISTS bookings_slot ON bookings (date, hour, status);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    booking_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holdings (
    holder TEXT NOT NULL,
    booking_id TEXT NOT NULL,
    date TEXT NOT NULL,
    hour TEXT NOT NULL,
    num_guests INTEGER NOT NULL,
    PRIMARY KEY (holder, booking_id)
);
CREATE INDEX IF NOT EXISTS holdings_booking ON holdings (booking_id);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, turn_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"""

_BOOKING_COLUMNS = ("booking_id", "name", "date", "hour", "num_guests", "status", "created_at", "session_id",
                    "cancellation_reason", "cancelled_at")
_BOOKING_SELECT = f"SELECT {', '.join(_BOOKING_COLUMNS)} FROM bookings"  # noqa: S608 - constant columns


def _booking(row: sqlite3.Row | tuple[Any, ...]) -> Booking:
    return Booking.from_dict(dict(zip(_BOOKING_COLUMNS, row, strict=True)))


def _turn(row: tuple[Any, ...]) -> Turn:
    session_id, seq, role, text, created_at, turn_id = row
    return Turn(session_id=session_id, seq=seq, role=role, text=text, created_at=created_at, turn_id=turn_id)


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


class _Db:
    """The connection and the one thread allowed to use it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        self.conn = conn

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @property
    def connection(self) -> sqlite3.Connection:
        if self.conn is None:
            raise RuntimeError("SQLite store is not started")
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _Part:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        return await self._store.run(fn, write=write)


class SQLiteBookings(_Part):
    async def create(self, booking: Booking, *, seats_per_slot: int, idempotency_key: str | None,
                     request_hash: str, holders: Sequence[str] = (),
                     limits: HolderLimits | None = None) -> tuple[Booking, bool]:
        def work(conn: sqlite3.Connection) -> tuple[Booking, bool]:
            if idempotency_key is not None:
                row = conn.execute("SELECT request_hash, booking_id FROM idempotency WHERE key = ?",
                                   (idempotency_key,)).fetchone()
                if row is not None:
                    if row[0] != request_hash:
                        raise IdempotencyMismatch(idempotency_key)
                    original = conn.execute(f"{_BOOKING_SELECT} WHERE booking_id = ?", (row[1],)).fetchone()
                    return _booking(original), False
            if limits is not None:
                for holder in holders:  # under BEGIN IMMEDIATE: no other worker can add to a ledger meanwhile
                    check_holder_limits(holder, _holdings(conn, holder), booking, limits)
            taken = _seats_taken(conn, booking.date, booking.hour)
            if taken + booking.num_guests > seats_per_slot:
                raise CapacityExceeded(seats_per_slot - taken)
            values = booking.to_dict()
            conn.execute(
                f"INSERT INTO bookings ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",  # noqa: S608
                tuple(values.values()),
            )
            if idempotency_key is not None:
                conn.execute("INSERT INTO idempotency (key, request_hash, booking_id, created_at) VALUES (?,?,?,?)",
                             (idempotency_key, request_hash, booking.booking_id, booking.created_at))
            conn.executemany("INSERT INTO holdings (holder, booking_id, date, hour, num_guests) VALUES (?,?,?,?,?)",
                             [(holder, booking.booking_id, booking.date, booking.hour, booking.num_guests)
                              for holder in dict.fromkeys(holders)])
            return booking, True

        stored, created = await self._run(work)
        if created:
            await self._store.emit(Change("bookings", None, stored.to_dict()))
        return stored, created

    async def get(self, booking_id: str) -> Booking | None:
        def work(conn: sqlite3.Connection) -> Booking | None:
            row = conn.execute(f"{_BOOKING_SELECT} WHERE booking_id = ?", (booking_id,)).fetchone()
            return _booking(row) if row else None

        return await self._run(work, write=False)

    async def cancel(self, booking_id: str, reason: str | None, *, now: str) -> tuple[Booking, bool]:
        def work(conn: sqlite3.Connection) -> tuple[Booking, Booking | None]:
            row = conn.execute(f"{_BOOKING_SELECT} WHERE booking_id = ?", (booking_id,)).fetchone()
            if row is None:
                raise BookingNotFound(booking_id)
            old = _booking(row)
            if old.status == "cancelled":
                return old, None
            conn.execute("UPDATE bookings SET status = 'cancelled', cancellation_reason = ?, cancelled_at = ? "
                         "WHERE booking_id = ?", (reason, now, booking_id))
            conn.execute("DELETE FROM holdings WHERE booking_id = ?", (booking_id,))
            new = _booking(conn.execute(f"{_BOOKING_SELECT} WHERE booking_id = ?", (booking_id,)).fetchone())
            return new, old

        booking, old = await self._run(work)
        if old is None:
            return booking, False
        await self._store.emit(Change("bookings", old.to_dict(), booking.to_dict()))
        return booking, True

    async def list_by_date(self, date: str) -> list[Booking]:
        def work(conn: sqlite3.Connection) -> list[Booking]:
            rows = conn.execute(f"{_BOOKING_SELECT} WHERE date = ? ORDER BY hour, created_at, booking_id",
                                (date,)).fetchall()
            return [_booking(r) for r in rows]

        return await self._run(work, write=False)

    async def seats_taken(self, date: str, hour: str) -> int:
        return await self._run(lambda conn: _seats_taken(conn, date, hour), write=False)


def _holdings(conn: sqlite3.Connection, holder: str) -> list[Holding]:
    rows = conn.execute("SELECT booking_id, date, hour, num_guests FROM holdings WHERE holder = ?",
                        (holder,)).fetchall()
    return [Holding(*row) for row in rows]


def _seats_taken(conn: sqlite3.Connection, date: str, hour: str) -> int:
    row = conn.execute("SELECT COALESCE(SUM(num_guests), 0) FROM bookings "
                       "WHERE date = ? AND hour = ? AND status = 'confirmed'", (date, hour)).fetchone()
    return int(row[0])


class SQLiteConversations(_Part):
    async def append(self, session_id: str, role: Role, text: str, *, turn_id: str, now: str) -> Turn:
        expires_at = _epoch(now) + self._store.retention_days * 86400

        def work(conn: sqlite3.Connection) -> tuple[Turn, bool]:
            row = conn.execute("SELECT session_id, seq, role, text, created_at, turn_id FROM turns "
                               "WHERE session_id = ? AND turn_id = ?", (session_id, turn_id)).fetchone()
            if row is not None:
                return _turn(row), False
            (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM turns WHERE session_id = ?",
                                   (session_id,)).fetchone()
            turn = Turn(session_id=session_id, seq=int(last) + 1, role=role, text=text, created_at=now,
                        turn_id=turn_id)
            conn.execute("INSERT INTO turns (session_id, seq, role, text, created_at, turn_id, expires_at) "
                         "VALUES (?,?,?,?,?,?,?)",
                         (turn.session_id, turn.seq, turn.role, turn.text, turn.created_at, turn.turn_id, expires_at))
            return turn, True

        turn, created = await self._run(work)
        if created:
            await self._store.emit(Change("conversations", None, turn.to_dict()))
        return turn

    async def list(self, session_id: str) -> list[Turn]:
        now = int(time.time())

        def work(conn: sqlite3.Connection) -> list[Turn]:
            rows = conn.execute("SELECT session_id, seq, role, text, created_at, turn_id FROM turns "
                                "WHERE session_id = ? AND expires_at > ? ORDER BY seq", (session_id, now)).fetchall()
            return [_turn(r) for r in rows]

        return await self._run(work, write=False)


class SQLiteSessions(_Part):
    async def put(self, record: SessionRecord) -> None:
        data = json.dumps(record.to_dict(), sort_keys=True)

        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT data FROM sessions WHERE session_id = ?", (record.session_id,)).fetchone()
            conn.execute("INSERT INTO sessions (session_id, data, expires_at) VALUES (?,?,?) "
                         "ON CONFLICT (session_id) DO UPDATE SET data = excluded.data, "
                         "expires_at = excluded.expires_at",
                         (record.session_id, data, record.expires_at))
            return json.loads(row[0]) if row else None

        old = await self._run(work)
        new = record.to_dict()
        if old != new:
            await self._store.emit(Change("sessions", old, new))

    async def get(self, session_id: str) -> SessionRecord | None:
        now = int(time.time())

        def work(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute("SELECT data FROM sessions WHERE session_id = ? AND expires_at > ?",
                               (session_id, now)).fetchone()
            return SessionRecord.from_dict(json.loads(row[0])) if row else None

        return await self._run(work, write=False)


class SQLiteStore:
    """``Store`` on one SQLite file (``settings.sqlite_file``)."""

    def __init__(self, path: Path | str, *, retention_days: int = 90) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self._db = _Db(self.path)
        self._listeners = Listeners()
        self._started = False
        self.bookings = SQLiteBookings(self)
        self.conversations = SQLiteConversations(self)
        self.sessions = SQLiteSessions(self)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        if not self._started:
            raise RuntimeError("SQLite store is not started")
        loop = asyncio.get_running_loop()
        if write:
            return await loop.run_in_executor(self._db.executor, self._db.transaction, fn)
        return await loop.run_in_executor(self._db.executor, fn, self._db.connection)

    async def emit(self, change: Change) -> None:
        await self._listeners.emit(change)

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._db.executor, self._db.open)
        self._started = True
        await self.run(self._sweep)

    def _sweep(self, conn: sqlite3.Connection) -> None:
        """Delete expired turns and sessions, as DynamoDB TTL would (silently: deletes emit no events)."""
        now = int(datetime.now(UTC).timestamp())
        conn.execute("DELETE FROM turns WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        # Ledger rows of past dates never count again (a day's margin for any time zone), like the TTL on
        # DynamoDB's ledger items; cancelled bookings' rows went with the cancellation.
        gone = datetime.fromtimestamp(now - 2 * 86400, UTC).date().isoformat()
        conn.execute("DELETE FROM holdings WHERE date < ?", (gone,))

    async def ready(self) -> bool:
        if not self._started:
            return False
        try:
            await self.run(lambda conn: conn.execute("SELECT 1").fetchone(), write=False)
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._db.executor, self._db.close)
        self._db.executor.shutdown(wait=True)
        self._db = _Db(self.path)  # a closed store can be started again

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        return self._listeners.add(listener)
