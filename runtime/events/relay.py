"""Cross-worker relay for the embedded gateway (standalone runtime with ``--workers`` > 1).

Every uvicorn worker is its own process with its own gateway, and the socket a browser subscribes on
lands on any of them. A booking committed in worker A would reach only the subscribers connected to
A. So each gateway forwards what it publishes to its sibling workers, which deliver it to their own
subscribers without forwarding it again.

Transport: a Unix stream socket per worker in one private directory (mode 0700, so other local users
can neither inject nor read events), newline-delimited JSON ``{"channel", "events"}`` frames. The
directory is the rendezvous: a worker lists it to find its siblings, and removes the socket of a
sibling whose process is gone. Each sibling has a bounded queue; if a sibling stops reading, events
for it are dropped with a warning rather than growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("runtime.events.relay")

MAX_LINE = 2 * 1024 * 1024
PEER_QUEUE = 2048
RESCAN_SECONDS = 1.0

Deliver = Callable[[str, list[str]], None]


def default_directory(data_dir: Path, port: int) -> Path:
    """One rendezvous directory per standalone deployment (data dir + port), short enough for AF_UNIX."""
    digest = hashlib.sha256(f"{data_dir.resolve()}:{port}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"concierge-events-{digest}"


def _alive(name: str) -> bool:
    if not name.isdigit():
        return True  # not named after a pid (tests): assume alive
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Peer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(PEER_QUEUE)
        self.task: asyncio.Task[None] | None = None
        self.gone = False
        self.warned = False

    async def run(self) -> None:
        """Connect (retrying while the sibling lives) and stream queued frames to it in order."""
        while not self.gone:
            try:
                _, writer = await asyncio.open_unix_connection(str(self.path))
            except (ConnectionRefusedError, FileNotFoundError):
                if not _alive(self.path.stem):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    self.gone = True
                    return
                await asyncio.sleep(0.2)
                continue
            try:
                while True:
                    frame = await self.queue.get()
                    writer.write(frame)
                    await writer.drain()
            except (ConnectionError, OSError):
                await asyncio.sleep(0.05)  # sibling restarted or went away: reconnect or notice it is gone
            finally:
                writer.close()


class WorkerRelay:
    """Forward local publishes to sibling workers and deliver theirs here."""

    def __init__(self, directory: Path, deliver: Deliver, *, name: str | None = None) -> None:
        self.directory = directory
        self.deliver = deliver
        self.name = name or str(os.getpid())
        self.path = directory / f"{self.name}.sock"
        self._server: asyncio.AbstractServer | None = None
        self._peers: dict[Path, _Peer] = {}
        self._scanned = 0.0

    async def start(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_uid != os.getuid():  # pre-created by someone else: could read our events
            raise PermissionError(f"{self.directory} belongs to another user; remove it or change DATA_DIR")
        os.chmod(self.directory, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        self._scan()

    def _scan(self) -> None:
        self._scanned = time.monotonic()
        try:
            entries = [p for p in self.directory.iterdir() if p.suffix == ".sock" and p != self.path]
        except FileNotFoundError:
            return
        for path in entries:
            peer = self._peers.get(path)
            if peer is None or peer.gone:
                peer = self._peers[path] = _Peer(path)
                peer.task = asyncio.get_running_loop().create_task(peer.run())

    def send(self, channel: str, events: list[str]) -> None:
        """Queue one publish for every sibling; never blocks the caller."""
        if self._server is None:
            return
        if time.monotonic() - self._scanned > RESCAN_SECONDS:
            self._scan()
        frame = json.dumps({"channel": channel, "events": events}, separators=(",", ":")).encode() + b"\n"
        for path, peer in list(self._peers.items()):
            if peer.gone:
                del self._peers[path]
                continue
            try:
                peer.queue.put_nowait(frame)
            except asyncio.QueueFull:
                if not peer.warned:
                    log.warning("worker %s is not reading relayed events; dropping them", path.stem)
                    peer.warned = True

    @property
    def peer_count(self) -> int:
        return sum(1 for p in self._peers.values() if not p.gone)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._scan()  # a sibling just connected: it may be new, so make sure events flow back to it too
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                    self.deliver(str(message["channel"]), list(message["events"]))
                except Exception:
                    log.exception("bad relayed event frame")
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for peer in self._peers.values():
            peer.gone = True
            if peer.task is not None:
                peer.task.cancel()
        await asyncio.gather(*(p.task for p in self._peers.values() if p.task), return_exceptions=True)
        self._peers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # only succeeds for the last worker out, leaving /tmp clean
