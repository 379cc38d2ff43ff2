"""The speech session core: one caller's conversation with a SpeechModel, across stream renewals.

A ``SpeechSession`` sits between a transport (16 kHz PCM in, 24 kHz PCM + JSON messages out through
``SessionOutput``) and a model stream of Nova Sonic events. It owns what must survive the model's
8-minute stream limit and its transient faults: the transcript (stored turn by turn, idempotently),
the tool calls (idempotent by toolUseId), usage, and the last seconds of caller audio.

A conversation is a chain of *segments*, one model stream each:

- start: sessionStart, promptStart (tools, voice), system prompt, then history (empty at first), the
  interactive audio block, and continuous ~32 ms audioInput frames - silence when the caller is quiet,
  because the service times out an idle input stream. While nothing has been said yet, a model that does
  not greet by itself (Nova Sonic) is asked to, with one interactive text block (docs/greeting.md).
- renewal: at ``renew_after_seconds`` the next stream is opened and primed in the background; it takes
  over at the next turn boundary (after the assistant's completion, never mid-utterance) or, failing
  that, at ``renew_deadline_seconds``. It gets the history (≤40 KB) and the caller audio of the last
  ~3 s that no transcript has covered yet.
- recovery: a retryable model error (timeout, throttling, stream errors, "System instability", 531)
  reopens a stream with history after a bounded exponential backoff; a trailing user turn nobody has
  answered is re-sent as interactive text so the guest need not repeat it. Non-retryable errors end the
  session with an ``error`` message, everything stored so far intact.

Three tasks per session do the work: the audio pump (frames out, silence filler), one receive loop per
live segment (events in; never blocked by tools, which run as their own tasks), and the turn writer
(stores finished transcript turns in order without holding up the audio).

What transports rely on is declared in ``runtime.speech.ports.VoiceSession``: ``wait_ended()`` (they hang up
on it), the call's ``trace`` (stage stamps, current in every task of the session and its model stream) and
``report_heard()`` (the caller's own reply time, one per reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from runtime import metrics, turn_trace
from runtime.auth import mint_session_token
from runtime.errors import Unavailable, ValidationFailed
from runtime.settings import Settings
from runtime.speech import protocol as p
from runtime.speech.failover import BREAKER_NOTICE, FAILOVER_NOTICE, Failover
from runtime.speech.history import build_history, split_utf8
from runtime.speech.model import SpeechModel, SpeechModelError, SpeechStream, StreamOptions
from runtime.speech.ports import INPUT_RATE, OUTPUT_RATE, SessionOutput, is_heard_figure
from runtime.speech.prompt import greeting_history_note, greeting_request, system_prompt
from runtime.speech.tools import ToolOutcome, ToolRunner, tool_specs
from runtime.speech.voices import check_voice, default_voice
from runtime.stores.base import SessionRecord, Store
from runtime.turn_trace import TurnTrace

log = logging.getLogger("runtime.speech.session")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timing knobs of the session core; defaults suit Nova Sonic's 8-minute stream limit."""

    renew_after_seconds: float = 450.0  # open the next stream at 7.5 min ...
    renew_deadline_seconds: float = 470.0  # ... and hand over by then even without a turn boundary
    # The service ends every stream at 8 minutes (ModelTimeoutException); a handover waiting for a running
    # tool gives up waiting this long before that, so the old stream never reaches the limit.
    stream_limit_seconds: float = 480.0
    stream_limit_margin_seconds: float = 4.0
    max_attempts: int = 4  # consecutive failed reconnects before the session gives up
    backoff_initial_seconds: float = 0.25
    backoff_max_seconds: float = 4.0
    frame_bytes: int = 1024  # 512 samples = 32 ms at 16 kHz s16le, the documented frame size
    silence_after_seconds: float = 0.1  # caller quiet this long -> stream silence frames
    replay_audio_seconds: float = 3.0
    max_queued_audio_seconds: float = 2.0  # caller audio waiting for the model; older frames are dropped
    tool_timeout_seconds: float = 20.0
    quiet_boundary_seconds: float = 1.0  # no model output this long (and no reply pending) = turn boundary
    # (Re)connecting stops this long after the call's start or the failure, whatever the attempts left:
    # the bound on how long a guest waits before hearing of a fault (docs/credentials-and-deadlines.md).
    give_up_seconds: float = 12.0
    # Call limits (docs/public-limits.md); None: no limit. The idle clock runs while the assistant listens,
    # from the later of the guest's last voiced audio and the end of the assistant's last words.
    idle_timeout_seconds: float | None = None
    max_call_seconds: float | None = None
    max_call_warning_seconds: float = 60.0
    goodbye_wait_seconds: float = 8.0  # longest the model gets to say goodbye before the line is cut anyway

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        return cls(
            renew_after_seconds=settings.speech_renew_after_seconds,
            renew_deadline_seconds=settings.speech_renew_deadline_seconds,
            max_attempts=settings.speech_max_attempts,
            give_up_seconds=settings.speech_give_up_seconds,
            idle_timeout_seconds=settings.call_idle_timeout_seconds,
            max_call_seconds=settings.call_max_seconds,
            max_call_warning_seconds=settings.call_max_warning_seconds,
        )

    @property
    def frame_seconds(self) -> float:
        return self.frame_bytes / 2 / INPUT_RATE


# Caller audio louder than this (RMS of 16-bit samples, about -36 dBFS) counts as speech when dating the
# end of the guest's turn; a quiet room or line noise stays well below it.
_VOICED_RMS = 520.0
_END_OF_SPEECH_LOOKBACK = 5.0  # seconds: older voiced audio belongs to an earlier turn


# What the model is asked to say when a call limit ends the call (interactive text, like the greeting
# request). Nova Sonic follows the instruction; the offline engine hears the goodbye intent in it.
_GOODBYE_REQUESTS = {
    "idle": "[The guest has been silent for too long, so the call is ending. Say goodbye briefly and thank them "
            "for calling. Goodbye.]",
    "max_duration": "[This call has reached its time limit and is ending. Say goodbye briefly and thank them for "
                    "calling. Goodbye.]",
}
_WARNING_REQUEST = ("[This call will end soon because of its time limit. Tell the guest so in one short sentence, "
                    "then carry on with what you were doing.]")
_LIMIT_MESSAGES = {
    "idle": "The call ended because nothing was said for a while.",
    "max_duration": "The call ended because it reached its time limit.",
}


def _is_voiced(frame: bytes) -> bool:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > _VOICED_RMS


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Content:
    kind: str  # TEXT | AUDIO | TOOL
    role: str
    stage: str | None
    texts: list[str] = field(default_factory=list)


class _Segment:
    """One model stream and the state that belongs to it alone."""

    def __init__(self, stream: SpeechStream, index: int) -> None:
        self.stream = stream
        self.index = index
        self.prompt_name = str(uuid.uuid4())
        self.audio_content = str(uuid.uuid4())
        self.opened_at = time.monotonic()
        self.audio_open = False
        self.closed = False
        self.proven = False  # produced output after (re)connecting
        self.failure: SpeechModelError | None = None
        self.lock = asyncio.Lock()  # a text/tool block is never interleaved with audio frames
        self.receiver: asyncio.Task[None] | None = None
        self.completion_id: str | None = None
        self.contents: dict[str, _Content] = {}
        self.tool_uses: dict[str, tuple[str, str, str | None]] = {}
        self.last_audio_content: str | None = None
        self.dropped_audio: set[str] = set()
        self.prompted: list[str] = []  # interactive texts sent here, never to be stored again if echoed back
        self.usage: dict[str, int] = {}

    async def send(self, event: p.NovaEvent) -> None:
        try:
            await self.stream.send(event)
        except SpeechModelError:
            raise
        except Exception as exc:  # a model implementation bug must not kill the pump or a tool task
            raise SpeechModelError(f"sending to the model failed: {exc}", code="model_failure",
                                   retryable=True) from exc


class SpeechSession:
    """A ``VoiceSession`` (runtime.speech.ports) backed by any ``SpeechModel``."""

    def __init__(self, manager: SessionManager, output: SessionOutput, *, transport: str, voice: str,
                 config: SessionConfig, client: str | None = None) -> None:
        self._manager = manager
        self._output = output
        self._config = config
        self._settings = manager.settings
        self._model = manager.model
        self._store = manager.store
        self.transport = transport
        self.voice = voice
        self.session_id = str(uuid.uuid4())
        self.session_token = mint_session_token(manager.session_secret, self.session_id,
                                                self._settings.session_ttl_seconds)
        self._tools = ToolRunner(manager.bookings, session_id=self.session_id, client=client)
        self._specs = tool_specs(self._settings.max_party_size)
        self._prompt = system_prompt(self._settings)
        # The assistant speaks first (docs/greeting.md): the text that asks a model which only answers input to
        # greet, and whether it was asked - then a renewed stream's history needs a note before the greeting.
        self._greeting_prompt = greeting_request(self._settings)
        self._greeting_asked = False
        self.created_at = _utc_now()
        self._started = False
        self._ended = False
        self._ending = False
        self._ended_event = asyncio.Event()
        self.end_reason: str | None = None
        # The call's stage stamps (runtime/turn_trace.py). The session's work runs in a context of its own in
        # which the trace is current, so every task it and the engine create inherit it (start()); end() makes
        # the trace finished in that same context, as a context variable's token must be reset where it was set.
        self._trace = TurnTrace(self.session_id, transport, self._model.name)
        self._context = contextvars.copy_context()
        self._trace_token = self._context.run(turn_trace.begin, self._trace)
        self._replies = 0  # replies whose first audio went to the transport after the guest spoke
        self._heard = 0  # caller "heard" reports taken (at most one per reply)
        # conversation state
        self.history: list[tuple[str, str]] = []  # finished turns, as stored
        self._turns: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue()
        self._tool_tasks: dict[str, asyncio.Task[ToolOutcome]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # old streams closing; never cancelled (would leak)
        self._status: str | None = None
        self._barge_key: str | None = None
        self._speech_ended_at: float | None = None
        self._last_voiced_at: float | None = None  # when caller audio last carried speech energy
        self._reply_pending = False
        self._last_model_event = time.monotonic()
        # audio
        self._inbuf = bytearray()
        max_frames = max(1, int(config.max_queued_audio_seconds / config.frame_seconds))
        self._frames: deque[bytes] = deque(maxlen=max_frames)
        self._frame_ready = asyncio.Event()
        self._replay: deque[bytes] = deque(maxlen=max(1, int(config.replay_audio_seconds / config.frame_seconds)))
        self._silence = bytes(config.frame_bytes)
        # segments
        self._active: _Segment | None = None
        self._next: _Segment | None = None
        self._segments = 0
        self._attempts = 0
        self._recovering = False
        self._retired_usage: dict[str, int] = {}
        self._notice: str | None = None  # spoken first by the next stream (set by a failover)
        self.fallback_reason: str | None = None  # why this session runs on the fallback engine, if it does
        self._probe = False  # this session is the circuit breaker's half-open probe, outcome not known yet
        self.renewals = 0
        self.recoveries = 0
        self._pump: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._limits: asyncio.Task[None] | None = None
        # When the guest will have heard the assistant's audio so far: transports play it at real time, so
        # the idle clock starts when the assistant stops talking, not when its audio was produced.
        self._assistant_speech_until: float | None = None
        self._completions = 0  # completionEnd events seen (the goodbye waits for the next one)
        self._completion_seen = asyncio.Event()

    # --- VoiceSession ------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    async def wait_ended(self) -> str:
        await self._ended_event.wait()
        return self.end_reason or "ended"

    @property
    def trace(self) -> TurnTrace:
        return self._trace

    def report_heard(self, seconds: float) -> None:
        """Observe the caller's figure for the latest reply; invalid or repeated reports are dropped.

        Bounded to one report per reply the session actually sent, so a caller cannot fill the histogram
        (a public endpoint takes these messages from anyone who can place a call).
        """
        if not is_heard_figure(seconds):
            return  # the same rule the transports apply to the caller's message
        if self._heard >= self._replies:
            return
        self._heard = self._replies
        metrics.CALLER_RESPONSE_LATENCY.labels(transport=self.transport, engine=self._model.name).observe(seconds)

    @property
    def usage(self) -> dict[str, int]:
        total = dict(self._retired_usage)
        for seg in (self._active, self._next):
            if seg is not None:
                for key, value in seg.usage.items():
                    total[key] = total.get(key, 0) + value
        return total

    async def start(self) -> None:
        """Open the first stream; raises ``Unavailable`` (after cleaning up) when the model cannot be reached.

        Runs in the session's own context (see ``__init__``): the model stream, the pump, the renewer and
        every task they create carry the call's trace. Cancelling ``start`` cancels that work too.
        """
        if self._started:
            return
        if self._ending:
            raise Unavailable("This call has already ended.", code="session_ended")
        self._started = True
        metrics.SESSIONS_TOTAL.labels(transport=self.transport, engine=self._model.name).inc()
        metrics.SESSIONS_ACTIVE.labels(transport=self.transport).inc()
        await asyncio.create_task(self._start(), name=f"start-{self.session_id}", context=self._context)

    async def _start(self) -> None:
        await self._put_record("active")
        self._writer = asyncio.create_task(self._write_turns(), name=f"turns-{self.session_id}")
        try:
            segment = await self._connect_first()
        except SpeechModelError as exc:
            await self._report_error(exc)
            await self.end(f"error:{exc.code}")
            raise Unavailable("The voice assistant is not available right now; please try again shortly.",
                              code="speech_unavailable") from exc
        if self._ending:  # the caller hung up while we were connecting
            await self._retire(segment, graceful=True)
            return
        self._activate(segment)
        self._pump = asyncio.create_task(self._pump_audio(), name=f"pump-{self.session_id}")
        self._renewer = asyncio.create_task(self._renew_loop(), name=f"renew-{self.session_id}")
        if self._config.idle_timeout_seconds is not None or self._config.max_call_seconds is not None:
            self._limits = asyncio.create_task(self._limits_loop(), name=f"limits-{self.session_id}")
        await self._set_status("listening")

    async def push_audio(self, pcm: bytes) -> None:
        if self._ending or not pcm:
            return
        self._inbuf += pcm
        size = self._config.frame_bytes
        while len(self._inbuf) >= size:
            frame = bytes(self._inbuf[:size])
            del self._inbuf[:size]
            if _is_voiced(frame):
                self._last_voiced_at = time.monotonic()
            self._frames.append(frame)
            self._replay.append(frame)
        self._frame_ready.set()

    async def end(self, reason: str) -> None:
        """Hang up; bounded (transports give it ~10 s) and complete even if cancelled half-way."""
        if self._ending:
            await self._ended_event.wait()
            return
        self._ending = True
        self.end_reason = reason
        current = asyncio.current_task()
        try:
            for task in (self._pump, self._renewer, self._limits):
                if task is not None and task is not current:
                    task.cancel()
            # Let tools that are writing bookings finish; the guest was promised an answer.
            pending = [t for t in self._tool_tasks.values() if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=4.0)
            for segment in (self._active, self._next):
                if segment is not None:
                    await self._retire(segment, graceful=True)
            self._active = self._next = None
            if self._retiring:
                await asyncio.wait(set(self._retiring), timeout=3.0)
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            self._turns.put_nowait(None)
            if self._writer is not None:
                await asyncio.wait({self._writer}, timeout=3.0)
            if self._started:
                await self._put_record("ended")
        finally:
            if self._probe and self._manager.failover is not None:  # hung up before the probe told anything
                self._manager.failover.breaker.release_probe()
            if self._started:
                metrics.SESSIONS_ACTIVE.labels(transport=self.transport).dec()
            self._ended = True
            self._manager._forget(self)
            self._finish_trace()
            try:
                # Queued before wait_ended() returns, so a transport that hangs up then still delivers it.
                await self._announce_end(reason)
            finally:
                self._ended_event.set()
        log.info("voice session ended", extra={"session_id": self.session_id, "reason": reason,
                                                "renewals": self.renewals, "recoveries": self.recoveries})

    def _finish_trace(self) -> None:
        try:
            self._context.run(turn_trace.end, self._trace_token)
        except RuntimeError:  # end() awaited inside the session's own context (a failed start): reset it here
            turn_trace.end(self._trace_token)

    async def _announce_end(self, reason: str) -> None:
        if self._status == "error":
            return  # the error message said it all
        if reason in _LIMIT_MESSAGES:  # the page is told why the line went quiet
            self._status = "ended"
            await self._send({"type": "status", "state": "ended", "reason": reason,
                              "message": _LIMIT_MESSAGES[reason]})
        else:
            await self._set_status("ended")

    # --- segments ----------------------------------------------------------------------------------

    async def _open_segment(self) -> _Segment:
        """Open a stream and send everything up to the system prompt (the part that never changes)."""
        try:
            stream = await self._model.open(StreamOptions(session_id=self.session_id, notice=self._notice))
        except SpeechModelError:
            raise
        except Exception as exc:
            log.exception("opening a model stream failed", extra={"session_id": self.session_id})
            raise SpeechModelError(f"opening the model stream failed: {exc}", code="model_failure",
                                   retryable=True) from exc
        self._segments += 1
        segment = _Segment(stream, self._segments)
        segment.receiver = asyncio.create_task(self._receive(segment), name=f"recv-{self.session_id}")
        try:
            await segment.send(p.session_start(endpointing_sensitivity=self._settings.endpointing_sensitivity))
            await segment.send(p.prompt_start(segment.prompt_name, voice_id=self.voice, tools=self._specs))
            content = str(uuid.uuid4())
            await segment.send(p.text_content_start(segment.prompt_name, content, "SYSTEM"))
            for chunk in split_utf8(self._prompt):
                await segment.send(p.text_input(segment.prompt_name, content, chunk))
            await segment.send(p.content_end(segment.prompt_name, content))
            await stream.ready()
        except BaseException:  # including cancellation by end(): never leak an open stream
            await self._retire(segment, graceful=False)
            raise
        return segment

    async def _begin_audio(self, segment: _Segment, *, recovering: bool) -> None:
        """History, the interactive audio block, the unanswered caller audio; then it is live.

        ``recovering``: the previous stream died (or was cut) before answering, so a trailing guest
        turn is re-sent as interactive text for this stream to answer.
        """
        turns = list(self.history)
        pending_user: str | None = None
        if recovering and turns and turns[-1][0] == "USER":
            # Nobody answered the last thing the guest said: ask again as interactive text (Nova 2).
            pending_user = turns.pop()[1]
        # Nobody has said anything yet: ask the model to greet, unless it greets by itself (the offline engine),
        # which would greet twice. Once the greeting is in the history, renewals and recoveries replay it instead.
        asks = self._settings.speech_greet_first and not self._model.greets_unprompted
        greet = asks and not self.history and pending_user is None
        lead_in = greeting_history_note(self._settings) if asks and self._greeting_asked else None
        name = segment.prompt_name
        async with segment.lock:
            for message in build_history(turns, lead_in=lead_in):
                content = str(uuid.uuid4())
                await segment.send(p.text_content_start(name, content, message.role))  # type: ignore[arg-type]
                for chunk in message.chunks:
                    await segment.send(p.text_input(name, content, chunk))
                await segment.send(p.content_end(name, content))
            await segment.send(p.audio_content_start(name, segment.audio_content))
            segment.audio_open = True
            if pending_user:
                content = str(uuid.uuid4())
                await segment.send(p.text_content_start(name, content, "USER", interactive=True))
                for chunk in split_utf8(pending_user):
                    await segment.send(p.text_input(name, content, chunk))
                await segment.send(p.content_end(name, content))
                segment.prompted.append(pending_user)
            elif greet:
                content = str(uuid.uuid4())
                for event in p.text_block(name, content, "USER", split_utf8(self._greeting_prompt), interactive=True):
                    await segment.send(event)
                segment.prompted.append(self._greeting_prompt)
                self._greeting_asked = True
            for frame in list(self._replay):
                await segment.send(p.audio_input(name, segment.audio_content, frame))

    async def _connect(self, *, recovering: bool) -> _Segment:
        segment = await self._open_segment()
        try:
            await self._begin_audio(segment, recovering=recovering)
        except BaseException:
            await self._retire(segment, graceful=False)
            raise
        return segment

    async def _retire(self, segment: _Segment, *, graceful: bool) -> None:
        """Close a stream in the documented order: audio contentEnd, promptEnd, sessionEnd."""
        if segment.closed:
            return
        segment.closed = True
        for key, value in segment.usage.items():
            self._retired_usage[key] = self._retired_usage.get(key, 0) + value
        segment.usage = {}
        if graceful:
            try:
                async with asyncio.timeout(2.0), segment.lock:
                    if segment.audio_open:
                        await segment.send(p.content_end(segment.prompt_name, segment.audio_content))
                    await segment.send(p.prompt_end(segment.prompt_name))
                    await segment.send(p.session_end())
            except (SpeechModelError, TimeoutError):
                pass
        with contextlib.suppress(Exception):
            await segment.stream.close()
        if segment.receiver is not None and segment.receiver is not asyncio.current_task():
            segment.receiver.cancel()

    def _retire_later(self, segment: _Segment, *, graceful: bool) -> None:
        task = asyncio.create_task(self._retire(segment, graceful=graceful), name=f"retire-{self.session_id}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{name}-{self.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- renewal and recovery ----------------------------------------------------------------------

    def _tools_busy(self) -> bool:
        return any(not t.done() for t in self._tool_tasks.values())

    def _at_turn_boundary(self) -> bool:
        quiet = time.monotonic() - self._last_model_event >= self._config.quiet_boundary_seconds
        return quiet and not self._reply_pending and not self._tools_busy()

    async def _renew_loop(self) -> None:
        cfg = self._config
        while not self._ending:
            active = self._active
            if active is None or self._recovering:
                await asyncio.sleep(0.05)
                continue
            age = time.monotonic() - active.opened_at
            if age < cfg.renew_after_seconds:
                await asyncio.sleep(min(cfg.renew_after_seconds - age, 1.0))
                continue
            if self._next is None:
                try:
                    primed = await self._open_segment()
                except SpeechModelError as exc:
                    log.warning("could not open the next stream: %s", exc, extra={"session_id": self.session_id})
                    await asyncio.sleep(cfg.backoff_initial_seconds)
                    continue
                if self._active is not active or self._ending:  # recovered meanwhile: no longer needed
                    await self._retire(primed, graceful=True)
                    continue
                self._next = primed
            # Past the deadline, hand over even mid-reply - but not with a tool call in flight, whose
            # result only the old stream can take, unless the stream is about to reach the service's
            # 8-minute limit: then the new stream resumes the guest's request (the tool still completes).
            at_limit = age >= cfg.stream_limit_seconds - cfg.stream_limit_margin_seconds
            forced = age >= cfg.renew_deadline_seconds and (not self._tools_busy() or at_limit)
            boundary = self._at_turn_boundary()
            if self._active is active and (boundary or forced):
                # Mid-reply, the new stream must answer the guest's last words itself.
                await self._handover(active, resume=not boundary)
            else:
                await asyncio.sleep(0.02)

    async def _on_turn_boundary(self, segment: _Segment) -> None:
        if self._next is not None and segment is self._active and not self._recovering and not self._tools_busy():
            await self._handover(segment)

    async def _handover(self, old: _Segment, *, resume: bool = False) -> None:
        new, self._next = self._next, None
        if new is None or self._active is not old or self._ending:
            return
        self._active = None  # caller audio meanwhile goes to the replay buffer only
        try:
            await self._begin_audio(new, recovering=resume)
        except SpeechModelError as exc:
            log.warning("next stream failed during handover: %s", exc, extra={"session_id": self.session_id})
            await self._retire(new, graceful=False)
            self._active = old  # keep talking on the old one; a timeout there triggers recovery
            if old.failure is not None:  # it failed while it was not the active one
                self._segment_failed(old, old.failure)
            return
        self._activate(new)
        self.renewals += 1
        log.info("speech stream renewed", extra={"session_id": self.session_id, "segment": new.index})
        self._retire_later(old, graceful=True)

    def _activate(self, segment: _Segment) -> None:
        """Make ``segment`` the live one; if it already failed while being set up, recover at once."""
        self._active = segment
        if segment.failure is not None:
            self._segment_failed(segment, segment.failure)

    def _segment_failed(self, segment: _Segment, exc: SpeechModelError) -> None:
        segment.failure = segment.failure or exc
        if self._ending or segment.closed:
            return
        if segment is self._next:
            self._next = None
            self._retire_later(segment, graceful=False)
            return
        if segment is not self._active or self._recovering:
            return
        self._recovering = True
        self._active = None
        self._spawn(self._recover(segment, exc), "recover")

    async def _recover(self, failed: _Segment, exc: SpeechModelError) -> None:
        log.warning("speech stream failed: %s (%s)", exc, exc.code, extra={"session_id": self.session_id})
        # Closed in the background: closing a dead stream may wait seconds on its connection, and that time
        # must not come out of the bound on telling the guest (docs/credentials-and-deadlines.md). Gracefully:
        # after a modelled error the input side is often still open, and the service expects promptEnd and
        # sessionEnd there (a failed send is ignored; _retire bounds it to 2 s).
        self._retire_later(failed, graceful=True)
        if self._next is not None:
            spare, self._next = self._next, None
            self._retire_later(spare, graceful=False)
        try:
            try:
                try:
                    segment = await self._connect_with_retry(recovering=True, error=exc)
                except SpeechModelError as final:
                    if not self._can_fail_over(final):
                        raise
                    segment = await self._fail_over(final.code, recovering=True)
            except SpeechModelError as final:
                await self._fail(final)
                return
            if self._ending:
                await self._retire(segment, graceful=True)
                return
            self._recovering = False
            self._activate(segment)
            self.recoveries += 1
            log.info("speech stream recovered", extra={"session_id": self.session_id, "attempt": self._attempts})
        finally:
            self._recovering = False

    async def _connect_with_retry(self, *, recovering: bool, error: SpeechModelError | None = None) -> _Segment:
        """Connect, retrying retryable failures with exponential backoff; raises the last error otherwise.

        ``_attempts`` counts consecutive failures and is reset once a stream produces output, so a
        session survives any number of separate faults but never loops on a dead service.
        """
        cfg = self._config
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + cfg.give_up_seconds
        while True:
            if error is not None:
                if not error.retryable or self._attempts >= cfg.max_attempts:
                    raise error
                delay = min(cfg.backoff_max_seconds, cfg.backoff_initial_seconds * 2 ** self._attempts)
                if loop.time() + delay >= give_up_at:
                    raise error
                self._attempts += 1
                await asyncio.sleep(delay)
            if self._ending:
                raise SpeechModelError("the session has ended", code="session_ended", retryable=False)
            try:
                async with asyncio.timeout_at(give_up_at):
                    return await self._connect(recovering=recovering)
            except SpeechModelError as exc:
                error = exc
            except TimeoutError:
                code = error.code if error is not None else "connect_timeout"
                raise SpeechModelError(f"no model stream within {cfg.give_up_seconds:g} s", code=code,
                                       retryable=False) from error

    # --- failover (docs/failover.md) -----------------------------------------------------------------

    async def _connect_first(self) -> _Segment:
        """The call's first stream: Nova Sonic unless the breaker is open, the fallback if that fails."""
        failover = self._manager.failover
        if failover is None:
            return await self._connect_with_retry(recovering=False)
        verdict = failover.breaker.admit()
        if verdict == "skip":
            return await self._fail_over("circuit_open", recovering=False)
        self._probe = verdict == "probe"
        try:
            # Success is recorded when a stream first produces output (_primary_proven): a stream whose
            # headers arrive and which then fails with throttlingException at once is a refusal too.
            return await self._connect_with_retry(recovering=False)
        except SpeechModelError as exc:
            if not self._can_fail_over(exc):
                raise
            return await self._fail_over(exc.code, recovering=False)

    def _primary_proven(self) -> None:
        failover = self._manager.failover
        if failover is not None and self.fallback_reason is None:
            self._probe = False
            failover.breaker.record_success()

    def _can_fail_over(self, exc: SpeechModelError) -> bool:
        """Faults of the service or its reach fail over; our own bad input and a hang-up do not."""
        failover = self._manager.failover
        return (failover is not None and not self._ending and self.fallback_reason is None
                and exc.code not in {"session_ended", "validation_error"})

    async def _fail_over(self, reason: str, *, recovering: bool) -> _Segment:
        """Go on with the fallback engine: same session, transcript, tools; history as its context."""
        failover: Failover | None = self._manager.failover
        assert failover is not None  # callers check _can_fail_over / the breaker first
        if reason != "circuit_open":
            self._probe = False
            failover.breaker.record_failure()
        try:
            failover.warm_up()
            self._model = failover.model
        except Exception as exc:  # the fallback cannot even be made: the guest gets the error, never silence
            log.exception("the fallback engine could not be started", extra={"session_id": self.session_id})
            raise SpeechModelError("the fallback engine could not be started", code="fallback_unavailable",
                                   retryable=False) from exc
        self.fallback_reason = reason
        self._attempts = 0
        self._notice = FAILOVER_NOTICE if self.history else BREAKER_NOTICE
        metrics.SPEECH_FAILOVERS.labels(reason=reason).inc()
        log.warning("speech session failing over to the %s engine (%s)", self._model.name, reason,
                    extra={"session_id": self.session_id, "reason": reason, "turns": len(self.history)})
        segment = await self._connect_with_retry(recovering=recovering)
        self._notice = None  # spoken once: renewals on the fallback carry on without it
        await self._send({"type": "status", "state": self._status or "listening", "engine": self._model.name,
                          "fallback": True, "reason": reason})
        await self._put_record("active")
        return segment

    async def _fail(self, exc: SpeechModelError) -> None:
        """A fault we cannot recover from: tell the caller, then end cleanly."""
        await self._report_error(exc)
        self._spawn(self.end(f"error:{exc.code}"), "end")

    async def _report_error(self, exc: SpeechModelError) -> None:
        log.error("speech session failed: %s (%s)", exc, exc.code, extra={"session_id": self.session_id})
        friendly = ("The voice assistant hit a problem and had to stop. Your conversation so far is saved; "
                    "please call again.")
        await self._send({"type": "error", "code": exc.code, "message": friendly})
        await self._set_status("error")

    # --- model output ------------------------------------------------------------------------------

    async def _receive(self, segment: _Segment) -> None:
        try:
            while True:
                event = await segment.stream.receive()
                if event is None:
                    raise SpeechModelError("the model closed the stream", code="stream_closed", retryable=True)
                if segment.closed or not segment.audio_open:
                    continue  # a closed stream's last words, or a primed stream that is not live yet
                if not segment.proven:
                    segment.proven = True
                    self._attempts = 0
                    self._primary_proven()
                self._last_model_event = time.monotonic()
                await self._handle(segment, event)
        except SpeechModelError as exc:
            self._segment_failed(segment, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session core failed on a model event", extra={"session_id": self.session_id})
            self._segment_failed(segment, SpeechModelError(str(exc), code="session_error", retryable=True))

    async def _handle(self, segment: _Segment, event: p.NovaEvent) -> None:
        name, body = p.parse(event)
        content_id = str(body.get("contentId") or "")
        if name == "audioOutput":
            await self._on_audio(segment, content_id, body)
        elif name == "textOutput":
            await self._on_text(segment, content_id, body)
        elif name == "contentStart":
            await self._on_content_start(segment, content_id, body)
        elif name == "contentEnd":
            await self._on_content_end(segment, content_id, body)
        elif name == "toolUse":
            segment.tool_uses[content_id] = (str(body.get("toolName", "")), str(body.get("toolUseId", "")),
                                             body.get("content"))
        elif name == "completionStart":
            segment.completion_id = body.get("completionId") or segment.completion_id
        elif name == "completionEnd":
            self._completions += 1
            self._completion_seen.set()
            self._reply_pending = False
            await self._set_status("listening")
            await self._on_turn_boundary(segment)
        elif name == "usageEvent":
            self._on_usage(segment, body)

    async def _on_content_start(self, segment: _Segment, content_id: str, body: dict[str, Any]) -> None:
        kind, role = str(body.get("type", "")), str(body.get("role", ""))
        segment.contents[content_id] = _Content(kind, role, p.generation_stage(body))
        if kind == "AUDIO" and role == "ASSISTANT":
            segment.last_audio_content = content_id
            await self._set_status("speaking")
        elif kind == "TEXT" and role == "ASSISTANT":
            self._reply_pending = True

    async def _on_text(self, segment: _Segment, content_id: str, body: dict[str, Any]) -> None:
        text = str(body.get("content") or "")
        if p.is_interruption_text(text):
            await self._barge_in(segment)
            text = p.strip_interruption(text)
            if not text:
                return
        content = segment.contents.get(content_id)
        role = str(body.get("role") or (content.role if content else "ASSISTANT"))
        if content is not None:
            content.texts.append(text)
        if content is not None and content.stage == "SPECULATIVE":
            await self._send({"type": "transcript", "role": role, "text": text, "final": False,
                              "turnId": self._turn_id(segment, content_id)})

    async def _on_audio(self, segment: _Segment, content_id: str, body: dict[str, Any]) -> None:
        if content_id in segment.dropped_audio:
            return  # the guest barged in: the rest of this utterance must not play
        pcm = p.decode_audio(body)
        if not pcm:
            return
        if self._speech_ended_at is not None:
            latency = time.monotonic() - self._speech_ended_at
            self._speech_ended_at = None
            self._trace.mark("first_audio_out")
            self._replies += 1
            metrics.RESPONSE_LATENCY.observe(latency)
            await self._send({"type": "latency", "endOfSpeechToAudioMs": round(latency * 1000, 1)})
        now = time.monotonic()
        self._assistant_speech_until = max(now, self._assistant_speech_until or now) + len(pcm) / (2 * OUTPUT_RATE)
        await self._output.audio(pcm)

    async def _on_content_end(self, segment: _Segment, content_id: str, body: dict[str, Any]) -> None:
        content = segment.contents.pop(content_id, None)
        stop = body.get("stopReason")
        kind = str(body.get("type") or (content.kind if content else ""))
        if stop == "INTERRUPTED":
            await self._barge_in(segment)
        if kind == "TOOL" or stop == "TOOL_USE":
            call = segment.tool_uses.pop(content_id, None)
            if call is not None:
                self._start_tool(segment, *call)
            return
        if kind != "TEXT" or content is None or content.stage == "SPECULATIVE":
            return
        text = p.strip_interruption("".join(content.texts))
        role = content.role if content.role in ("USER", "ASSISTANT") else "ASSISTANT"
        if role == "USER" and self._is_echo(segment, text):
            return  # our own interactive text (the greeting prompt, a re-asked question), not new guest speech
        if text:
            turn_id = self._turn_id(segment, content_id)
            self.history.append((role, text))
            self._turns.put_nowait((role, text, turn_id))
            await self._send({"type": "transcript", "role": role, "text": text, "final": True, "turnId": turn_id})
        if role == "ASSISTANT" and not self._tools_busy():
            self._reply_pending = False
            await self._set_status("listening")
        if role == "USER":
            # End of the guest's speech: the clock for response latency starts, and the audio that
            # produced this transcript no longer needs replaying on a new stream. The model reports the
            # turn only after its own endpointing, so the clock starts at the last voiced caller frame
            # when there is one, which is when the guest actually stopped talking.
            now = time.monotonic()
            voiced = self._last_voiced_at
            self._speech_ended_at = voiced if voiced is not None and now - voiced < _END_OF_SPEECH_LOOKBACK else now
            self._reply_pending = True
            self._replay.clear()
            await self._set_status("thinking")

    @staticmethod
    def _is_echo(segment: _Segment, text: str) -> bool:
        """Whether a USER transcript is an interactive text this stream was sent (consumed on a match).

        The service's documents do not say whether cross-modal text comes back as a USER transcript; if it
        does, the greeting prompt must not become a guest turn, nor a re-asked question a second one.
        """
        said = " ".join(text.split())
        for index, sent in enumerate(segment.prompted):
            if " ".join(sent.split()) == said:
                del segment.prompted[index]
                return True
        return False

    def _turn_id(self, segment: _Segment, content_id: str) -> str:
        return f"{self.session_id}:{segment.completion_id or segment.index}:{content_id}"

    async def _barge_in(self, segment: _Segment) -> None:
        """Both signals (marker text, INTERRUPTED stop reason) land here; act once per utterance."""
        key = segment.last_audio_content or f"completion:{segment.completion_id}"
        if key == self._barge_key:
            return
        self._barge_key = key
        if segment.last_audio_content:
            segment.dropped_audio.add(segment.last_audio_content)
        self._output.flush_audio()
        self._assistant_speech_until = time.monotonic()  # the rest of the utterance will not be played
        self._reply_pending = False
        await self._send({"type": "interrupted"})
        await self._set_status("listening")

    def _on_usage(self, segment: _Segment, body: dict[str, Any]) -> None:
        details = body.get("details") or {}
        delta, total = details.get("delta") or {}, details.get("total") or {}
        for direction in ("input", "output"):
            for kind, key in (("speechTokens", "speech"), ("textTokens", "text")):
                amount = int((delta.get(direction) or {}).get(kind) or 0)
                if amount > 0:
                    metrics.MODEL_TOKENS.labels(direction=direction, kind=key).inc(amount)
                if total:
                    segment.usage[f"{direction}_{key}_tokens"] = int((total.get(direction) or {}).get(kind) or 0)
        if not total and body.get("totalTokens") is not None:
            segment.usage["total_tokens"] = int(body.get("totalTokens") or 0)

    # --- call limits -------------------------------------------------------------------------------

    async def _limits_loop(self) -> None:
        """End the call when the guest stays silent too long or the call reaches its maximum length."""
        try:
            await self._watch_limits()
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave a call without its limits silently: end it rather
            log.exception("call-limit watcher failed", extra={"session_id": self.session_id})
            self._spawn(self.end("error:limits"), "end")

    async def _watch_limits(self) -> None:
        cfg = self._config
        started = time.monotonic()
        warned = cfg.max_call_seconds is None or cfg.max_call_warning_seconds <= 0
        shortest = min(x for x in (cfg.idle_timeout_seconds, cfg.max_call_seconds) if x is not None)
        tick = min(1.0, shortest / 4)
        while not self._ending:
            await asyncio.sleep(tick)
            now = time.monotonic()
            elapsed = now - started
            if cfg.max_call_seconds is not None:
                if elapsed >= cfg.max_call_seconds:
                    await self._end_with_goodbye("max_duration")
                    return
                if not warned and elapsed >= cfg.max_call_seconds - cfg.max_call_warning_seconds:
                    warned = True
                    await self._warn_call_ending(cfg.max_call_seconds - elapsed)
            if cfg.idle_timeout_seconds is not None and self._status == "listening" and not self._tools_busy():
                last = max(x for x in (started, self._last_voiced_at, self._assistant_speech_until) if x is not None)
                if now - last >= cfg.idle_timeout_seconds:
                    await self._end_with_goodbye("idle")
                    return

    async def _warn_call_ending(self, seconds_left: float) -> None:
        await self._send({"type": "notice", "code": "call_ending_soon", "secondsLeft": max(0, round(seconds_left)),
                          "message": "This call will end soon: it is close to its time limit."})
        if not self._model.greets_unprompted:
            # Spoken only by a model that follows instructions (one that must be asked to greet, Nova Sonic);
            # the offline engine's dialogue would take the instruction for something the guest said.
            await self._say_instruction(_WARNING_REQUEST)

    async def _end_with_goodbye(self, reason: str) -> None:
        """Ask the model for a goodbye, give it ``goodbye_wait_seconds`` to say it, then hang up."""
        log.info("call limit reached", extra={"session_id": self.session_id, "reason": reason})
        seen = self._completions
        if await self._say_instruction(_GOODBYE_REQUESTS[reason]):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.goodbye_wait_seconds):
                    while self._completions <= seen and not self._ending:
                        self._completion_seen.clear()
                        await self._completion_seen.wait()
        self._spawn(self.end(reason), "end")  # like _fail: the hang-up runs as its own task, held in _tasks

    async def _say_instruction(self, text: str) -> bool:
        """Send an interactive text turn for the model to answer; False when no stream is live."""
        segment = self._active
        if segment is None or segment.closed or not segment.audio_open:
            return False
        content = str(uuid.uuid4())
        try:
            async with segment.lock:
                for event in p.text_block(segment.prompt_name, content, "USER", split_utf8(text), interactive=True):
                    await segment.send(event)
        except SpeechModelError as exc:
            self._segment_failed(segment, exc)
            return False
        segment.prompted.append(text)
        return True

    # --- tools -------------------------------------------------------------------------------------

    def _start_tool(self, segment: _Segment, name: str, tool_use_id: str, content: str | None) -> None:
        task = self._tool_tasks.get(tool_use_id)
        first = task is None
        if task is None:
            task = asyncio.create_task(self._run_tool(name, tool_use_id, content), name=f"tool-{tool_use_id}")
            self._tool_tasks[tool_use_id] = task
        self._reply_pending = True
        self._spawn(self._deliver_tool(segment, tool_use_id, task, announce=first), "tool-result")

    async def _run_tool(self, name: str, tool_use_id: str, content: str | None) -> ToolOutcome:
        try:
            async with asyncio.timeout(self._config.tool_timeout_seconds):
                return await self._tools.run(name, tool_use_id, content)
        except TimeoutError:
            return ToolOutcome({"error": "The booking system took too long to answer. Please try again."})

    async def _deliver_tool(self, segment: _Segment, tool_use_id: str, task: asyncio.Task[ToolOutcome], *,
                            announce: bool) -> None:
        outcome = await task
        if announce and outcome.booking_action and outcome.booking is not None:
            await self._send({"type": "booking", "action": outcome.booking_action, "booking": outcome.booking})
        if segment.closed:
            log.warning("tool result for a stream that is gone", extra={"session_id": self.session_id,
                                                                         "tool_use_id": tool_use_id})
            return
        name = segment.prompt_name
        content = str(uuid.uuid4())
        try:
            async with segment.lock:
                await segment.send(p.tool_content_start(name, content, tool_use_id))
                await segment.send(p.tool_result(name, content, outcome.result))
                await segment.send(p.content_end(name, content))
        except SpeechModelError as exc:
            self._segment_failed(segment, exc)

    # --- caller audio ------------------------------------------------------------------------------

    async def _pump_audio(self) -> None:
        """Send caller frames as they come; when the caller is quiet, keep the stream fed with silence."""
        try:
            await self._pump_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audio pump failed", extra={"session_id": self.session_id})
            await self._fail(SpeechModelError("audio pump failed", code="session_error", retryable=False))

    async def _pump_loop(self) -> None:
        cfg = self._config
        timeout = cfg.silence_after_seconds
        while not self._ending:
            if not self._frames:
                self._frame_ready.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self._frame_ready.wait()
                except TimeoutError:
                    timeout = cfg.frame_seconds  # from now on one silence frame per frame interval
                    await self._send_frame(self._silence)
                    continue
            timeout = cfg.silence_after_seconds
            while self._frames:
                await self._send_frame(self._frames.popleft())

    async def _send_frame(self, frame: bytes) -> None:
        segment = self._active
        if segment is None or not segment.audio_open or segment.closed:
            return  # reconnecting: the replay buffer keeps the caller's last seconds
        try:
            async with segment.lock:
                await segment.send(p.audio_input(segment.prompt_name, segment.audio_content, frame))
        except SpeechModelError as exc:
            self._segment_failed(segment, exc)

    # --- caller messages and records ---------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._output.message(message)
        except Exception:
            log.debug("could not deliver a message to the caller", exc_info=True)

    async def _set_status(self, state: str) -> None:
        if state != self._status:
            self._status = state
            await self._send({"type": "status", "state": state})

    async def _write_turns(self) -> None:
        """Store finished turns strictly in order; a store hiccup is retried, never reordered, never dropped.

        A turn the store refused four times in a row stays first in line: it is tried again before the next
        turn is written (appends are idempotent by turn id, so a write that did land is not doubled) and once
        more when the call ends. Only what still cannot be stored then is given up, as an error in the log
        and ``conversation_turn_write_failures_total{outcome="lost"}``.
        """
        waiting: deque[tuple[str, str, str]] = deque()
        while True:
            item = await self._turns.get()
            if item is not None:
                waiting.append(item)
            while waiting and await self._store_turn(*waiting[0]):
                waiting.popleft()
            if item is None:
                if waiting:
                    metrics.TURN_WRITE_FAILURES.labels(outcome="lost").inc(len(waiting))
                    log.error("%d turn(s) of this call could not be stored", len(waiting),
                              extra={"session_id": self.session_id})
                return
            if waiting:
                log.error("the store refuses turns; %d waiting, retried with the next turn", len(waiting),
                          extra={"session_id": self.session_id})

    async def _store_turn(self, role: str, text: str, turn_id: str) -> bool:
        for attempt in range(4):
            try:
                await self._store.conversations.append(self.session_id, role, text,  # type: ignore[arg-type]
                                                       turn_id=turn_id, now=_utc_now())
                return True
            except Exception:
                metrics.TURN_WRITE_FAILURES.labels(outcome="retried").inc()
                log.warning("storing a turn failed (attempt %d)", attempt + 1, exc_info=True,
                            extra={"session_id": self.session_id})
                await asyncio.sleep(0.2 * 2 ** attempt)
        return False

    async def _put_record(self, status: str) -> None:
        ended = status == "ended"
        record = SessionRecord(
            session_id=self.session_id, status=status,  # type: ignore[arg-type]
            created_at=self.created_at,
            expires_at=int(time.time()) + self._settings.session_ttl_seconds,
            transport=self.transport, engine=self._model.name,
            ended_at=_utc_now() if ended else None, end_reason=self.end_reason if ended else None,
            usage=self.usage,
        )
        try:
            await self._store.sessions.put(record)
        except Exception:
            log.warning("storing the session record failed", exc_info=True, extra={"session_id": self.session_id})


class SessionManager:
    """The process's ``SessionFactory``: creates sessions, enforces capacity, ends them all on shutdown."""

    def __init__(self, model: SpeechModel, bookings: Any, store: Store, settings: Settings, *,
                 session_secret: str, config: SessionConfig | None = None,
                 failover: Failover | None = None) -> None:
        self.model = model
        self.failover = failover
        self.bookings = bookings
        self.store = store
        self.settings = settings
        self.session_secret = session_secret
        self.config = config or SessionConfig.from_settings(settings)
        self._sessions: dict[str, SpeechSession] = {}

    @property
    def active_count(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> SpeechSession | None:
        return self._sessions.get(session_id)

    async def create(self, output: SessionOutput, *, transport: str = "webrtc",
                     voice: str | None = None, client: str | None = None) -> SpeechSession:
        """A new session; ``client`` (``runtime.ratelimit.client_key``) is who the booking limits count."""
        if transport not in ("webrtc", "websocket"):
            raise ValidationFailed(f"unknown transport {transport!r}", details={"transport": "webrtc or websocket"})
        # The catalogue's rule and default (runtime/speech/voices.py), as /api/config and the offer apply them.
        voice = default_voice(self.model.name, self.settings.voice_id) if voice is None \
            else check_voice(self.model.name, voice)
        if len(self._sessions) >= self.settings.max_sessions_per_process:
            raise Unavailable("All lines are busy right now; please try again in a minute.", code="at_capacity")
        session = SpeechSession(self, output, transport=transport, voice=voice, config=self.config, client=client)
        self._sessions[session.session_id] = session
        return session

    def _forget(self, session: SpeechSession) -> None:
        self._sessions.pop(session.session_id, None)

    async def close_all(self, reason: str = "shutdown") -> None:
        sessions = list(self._sessions.values())
        if sessions:
            await asyncio.gather(*(s.end(reason) for s in sessions), return_exceptions=True)
        self._sessions.clear()
