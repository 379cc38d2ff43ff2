"""Booking throughput through the real BookingService, SQLite vs DynamoDB (moto), spread vs one slot.

Prints bookings/s for each store uncontended (every booking in its own slot) and contended (all in one
slot, the capacity check serialised on the same rows/counter item), plus contended/uncontended ratios;
the uncontended run of each store is the baseline measured in the same run. DynamoDB runs under moto
in-process (one store thread, see runtime/stores/dynamodb.py), so its absolute figures measure our code
plus moto, not AWS latency.

Run from the repo root: ``.venv/bin/python bench/bookings.py`` (well under 60 s).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3
from moto import mock_aws

from runtime.bookings.service import BookingService
from runtime.bookings.validation import fmt_hour, slots
from runtime.settings import load_settings
from runtime.stores.base import Store
from runtime.stores.dynamodb import DynamoDBStore, table_spec
from runtime.stores.sqlite import SQLiteStore

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CONCURRENCY = 16


async def run(store: Store, n: int, *, contended: bool) -> float:
    settings = load_settings(seats_per_slot=10_000, booking_horizon_days=365)
    service = BookingService(store.bookings, settings, clock=lambda: NOW)
    hours = [fmt_hour(t) for t in slots(settings)]
    requests = []
    for i in range(n):
        day = (NOW + timedelta(days=1 + (0 if contended else i // len(hours)))).date().isoformat()
        hour = "19:00" if contended else hours[i % len(hours)]
        requests.append({"name": "Bench Guest", "date": day, "hour": hour, "num_guests": 2})
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def worker() -> None:
        while not queue.empty():
            await service.create(queue.get_nowait())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    stored = 0
    for day in {str(r["date"]) for r in requests}:
        stored += len(await store.bookings.list_by_date(day))
    assert stored == n, f"expected {n} bookings, found {stored}"
    return n / elapsed


async def sqlite_figures(n: int) -> tuple[float, float]:
    results = []
    for contended in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "bench.db")
            await store.start()
            results.append(await run(store, n, contended=contended))
            await store.close()
    return results[0], results[1]


async def dynamodb_figures(n: int) -> tuple[float, float]:
    results = []
    for contended in (False, True):
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            for name in ("B", "C", "S"):
                # No stream: moto deep-copies a table, stream history included, on every transaction,
                # which would make this a benchmark of moto's copying rather than of the store.
                spec = {k: v for k, v in table_spec(name).items() if k != "StreamSpecification"}
                client.create_table(**spec)
            store = DynamoDBStore(booking_table="B", chat_history_table="C", session_table="S",
                                  client=client, max_concurrency=1)
            await store.start()
            results.append(await run(store, n, contended=contended))
            await store.close()
    return results[0], results[1]


async def main() -> None:
    print(f"bookings through BookingService, {CONCURRENCY} concurrent clients")
    print(f"{'store':<16}{'n':>6}{'uncontended/s':>16}{'contended/s':>14}{'ratio':>8}")
    for label, figures, n in (("sqlite", sqlite_figures, 1000), ("dynamodb(moto)", dynamodb_figures, 200)):
        uncontended, contended = await figures(n)
        print(f"{label:<16}{n:>6}{uncontended:>16.0f}{contended:>14.0f}{contended / uncontended:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
