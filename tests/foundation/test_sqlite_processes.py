"""Several worker processes share one SQLite file: BEGIN IMMEDIATE must keep the slot from overbooking."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from runtime.bookings.service import new_booking_id
from runtime.stores.base import Booking, CapacityExceeded
from runtime.stores.sqlite import SQLiteStore


async def test_several_connections_on_one_file_never_overbook(tmp_path: Path) -> None:
    # Each SQLiteStore owns its own connection and thread, exactly like one per worker process.
    workers = [SQLiteStore(tmp_path / "shared.db") for _ in range(4)]
    for worker in workers:
        await worker.start()
    attempts = [
        Booking(booking_id=new_booking_id(), name="Guest", date="2026-12-10", hour="19:00", num_guests=4,
                status="confirmed", created_at="2026-12-03T09:00:00Z")
        for _ in range(300)
    ]
    results = await asyncio.gather(*(
        workers[i % 4].bookings.create(b, seats_per_slot=400, idempotency_key=None, request_hash=b.booking_id)
        for i, b in enumerate(attempts)
    ), return_exceptions=True)
    assert sum(isinstance(r, tuple) for r in results) == 100
    assert sum(isinstance(r, CapacityExceeded) for r in results) == 200
    for worker in workers:
        assert await worker.bookings.seats_taken("2026-12-10", "19:00") == 400
        await worker.close()
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
