"""The offline engine as a ``SpeechModel``: Nova Sonic's event protocol in and out, all on this machine.

Per stream: a recogniser (Silero turn detection + domain decoder), a dialogue manager, and asyncio
tasks — audio to utterances, utterances to replies, and one task per spoken reply (cancelled on barge-in).
CPU work (decoding, synthesis) runs on the engine's own thread pool, so the event loop that also paces
WebRTC media only ever does queue hand-offs. Models shared by every stream (TTS, generic LM, the built
domain LM files) load once per process in ``warm_up``/first ``open``.

End of turn is decided in two steps (runtime/engine/asr.py, docs/offline-engine.md): when it becomes
*likely* the recogniser hands out the final text and the engine prepares the whole reply at once
(transcript, dialogue, TTS) — speculatively: every output event is held back, and the dialogue state is
restored, if the guest goes on speaking (``SpeechResumed``); when it is *confirmed* (``TurnConfirmed``) the
held events go out in one go. A tool call's ``toolUse`` is an output event too, so no tool runs — and no
booking is made — for a turn that was not confirmed.

Timing model for barge-in: assistant audio is generated faster than real time and played by the caller,
so "the assistant is still talking" means the emitted audio has not finished playing. The engine tracks
that on two clocks — input audio received (a live caller streams continuously, silence included) and wall
time — and treats user speech as barge-in only while both say playback is still running.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import copy
import json
import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import soxr

from runtime import turn_trace
from runtime.engine import memory
from runtime.engine.asr import SAMPLE_RATE as ASR_RATE
from runtime.engine.asr import (
    GenericRecognizer,
    SpeechResumed,
    SpeechStarted,
    StreamingRecognizer,
    TurnConfirmed,
    Utterance,
)
from runtime.engine.dialogue import DialogueManager
from runtime.engine.lm.build import LanguageAssets, build_assets
from runtime.engine.parsing import is_fragment, normalize
from runtime.engine.tts import SAMPLE_RATE as TTS_RATE
from runtime.engine.tts import Synthesizer, split_for_speech, trim_silence
from runtime.settings import Settings
from runtime.speech import protocol
from runtime.speech.model import NovaEvent, SpeechModelError, StreamOptions
from runtime.speech.protocol import INTERRUPTED_MARKER, OutputIds

log = logging.getLogger("runtime.engine")

AUDIO_CHUNK_SECONDS = 0.08  # audioOutput payload size: small enough to start playback at once
TOOL_TIMEOUT_SECONDS = 15.0
# A closed stream's recogniser is freed when its transport drops the session, just after the close: trim the
# heap this long after a close (at most one trim per window however many calls end in it). docs/memory.md
TRIM_DELAY_SECONDS = 2.0


@dataclass(slots=True)
class _Models:
    assets: LanguageAssets
    tts: Synthesizer
    generic: GenericRecognizer


_SHARED: dict[str, Any] = {}  # per process: TTS, generic decoder, and built LM assets per cache dir
_SHARED_LOCK = threading.Lock()


def _shared_models(settings: Settings) -> _Models:
    """Every engine instance in the process shares one TTS and one generic decoder (~300 MB together)."""
    with _SHARED_LOCK:
        if "tts" not in _SHARED:
            tts = Synthesizer()
            tts.warm_up()
            _SHARED["tts"] = tts
            _SHARED["generic"] = GenericRecognizer()
        key = f"assets:{settings.data_dir}"
        if key not in _SHARED:
            _SHARED[key] = build_assets(settings.data_dir)
        return _Models(assets=_SHARED[key], tts=_SHARED["tts"], generic=_SHARED["generic"])


@dataclass(slots=True, eq=False)
class _Speculation:
    """A reply prepared for an utterance whose end of turn is likely but not yet confirmed."""

    seq: int
    dialogue: DialogueManager  # the state before this turn, put back if the guest goes on
    totals: dict[str, int]
    held: list[NovaEvent] = field(default_factory=list)
    stamps: list[tuple[turn_trace.Stage, float]] = field(default_factory=list)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    audio_seconds: float = 0.0  # of held audio: playback starts when it is released


# The speculation a task works for: tasks created for a reply (its speak task) inherit it, so even events
# emitted after the reply was abandoned (a cancelled task's clean-up) are dropped, never sent.
_SPECULATION: contextvars.ContextVar[_Speculation | None] = contextvars.ContextVar("engine_speculation",
                                                                                   default=None)


@dataclass(slots=True)
class _Greet:
    pass


@dataclass(slots=True)
class _TextTurn:
    text: str


@dataclass(slots=True)
class _Notice:
    """``StreamOptions.notice``: said before anything else (the session core's failover notice)."""

    text: str


class OfflineEngine:
    """``SpeechModel`` "local": pocketsphinx ASR + slot-filling dialogue + hibari TTS."""

    name = "local"
    greets_unprompted = True  # a stream with no history greets on its own (``_Greet``)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._models: _Models | None = None
        self._load_lock = asyncio.Lock()
        self._streams: set[OfflineStream] = set()
        # Decoding and synthesis get their own threads so they never queue behind other executor work.
        self._executor = ThreadPoolExecutor(max_workers=max(2, settings.workers), thread_name_prefix="engine")
        self._trim_pending = False
        self.trims = 0  # heap trims run (bench/soak.py and tests read it)

    @property
    def ready(self) -> bool:
        return self._models is not None

    async def warm_up(self) -> None:
        """Load every shared model now (startup), so /readyz turns green only when the first call is fast."""
        await self._load()

    async def _load(self) -> _Models:
        async with self._load_lock:
            if self._models is None:
                loop = asyncio.get_running_loop()
                started = time.perf_counter()
                self._models = await loop.run_in_executor(self._executor, _shared_models, self._settings)
                log.info("offline engine ready in %.2f s", time.perf_counter() - started)
            return self._models

    async def open(self, options: StreamOptions) -> OfflineStream:
        models = await self._load()
        loop = asyncio.get_running_loop()
        recognizer = await loop.run_in_executor(self._executor, StreamingRecognizer, models.assets)
        stream = OfflineStream(self, models, recognizer, options)
        self._streams.add(stream)
        stream.start()
        return stream

    def _forget(self, stream: OfflineStream) -> None:
        self._streams.discard(stream)
        self._schedule_trim()

    def _schedule_trim(self) -> None:
        """Give the freed heap of ended calls back to the OS soon; without it RSS grew ~10 MB per call."""
        if self._trim_pending or not memory.available:
            return
        self._trim_pending = True
        asyncio.get_running_loop().call_later(TRIM_DELAY_SECONDS, self._trim_now)

    def _trim_now(self) -> None:
        self._trim_pending = False
        with contextlib.suppress(RuntimeError):  # the engine was closed meanwhile: its executor takes no work
            self._executor.submit(self._trim_job)

    def _trim_job(self) -> None:
        memory.release_free_heap()
        self.trims += 1

    async def close(self) -> None:
        for stream in list(self._streams):
            await stream.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._models = None  # the process-wide models stay loaded for the next engine instance


class OfflineStream:
    """One Nova Sonic-style duplex stream backed by the offline engine."""

    def __init__(self, engine: OfflineEngine, models: _Models, recognizer: StreamingRecognizer,
                 options: StreamOptions) -> None:
        settings = engine._settings
        self._engine = engine
        self._models = models
        # None once closed: dropped at once (docs/memory.md), not when a reference cycle is collected.
        self._recognizer: StreamingRecognizer | None = recognizer
        self._settings = settings
        self._session_id = str(uuid.uuid4())
        self._options = options
        self._out: asyncio.Queue[NovaEvent | SpeechModelError | None] = asyncio.Queue()
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._turns: asyncio.Queue[_Greet | _Notice | _TextTurn | Utterance] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._finished = False
        self._broken = False  # an internal failure was reported; close() still cleans up
        self._prompt_name = ""
        self._declared_tools: set[str] | None = None
        self._output_rate = TTS_RATE
        self._contents: dict[str, dict[str, Any]] = {}  # open input content blocks by contentName
        self._tool_waits: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._greeted = False
        self._history: list[tuple[str, str]] = []  # replayed turns (stream renewal), before the audio block
        self._heard_user = False
        self._completion_id = ""
        self._speak_task: asyncio.Task[bool] | None = None
        self._play_end_input = 0.0  # seconds of input audio at which emitted assistant audio ends
        self._play_end_wall = 0.0  # monotonic time at which it ends
        self._totals = {"in_speech": 0, "in_text": 0, "out_speech": 0, "out_text": 0}
        self._spec: _Speculation | None = None  # the reply being prepared for the latest likely utterance
        self._reply_task: asyncio.Task[None] | None = None
        self._confirmed_seq = 0  # highest utterance seq whose end of turn was confirmed
        self._superseded_seq = 0  # highest utterance seq merged into a continuation (never answered)
        self._last_utt: Utterance | None = None
        self.superseded_turns = 0  # likely ends of turn the guest spoke on after (their replies dropped)
        # (input seconds received, monotonic time received): maps the recogniser's audio clock to wall time
        self._received = 0
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=1024)
        self.dialogue = DialogueManager(
            restaurant=settings.restaurant_name, opening=settings.opening_time, closing=settings.closing_time,
            max_party=settings.max_party_size, fallback_today=lambda: datetime.now(settings.tz).date())
        recognizer.fragment = self._is_fragment

    def _is_fragment(self, text: str) -> bool:
        """A pause after this text is probably mid-turn: an unfinished sentence, an opening ("hi there"), or
        a few words that mean nothing here yet — what a greeting misheard sounds like ("i eric"): the guest
        gets a moment more to go on before the reply (runs on the decoding thread; reads only)."""
        if is_fragment(text):
            return True
        words = normalize(text)
        return 0 < len(words) <= 3 and not self.dialogue.understands(text)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._asr_loop(), name="engine-asr"),
                       asyncio.create_task(self._dialogue_loop(), name="engine-dialogue")]

    # --- SpeechStream ---------------------------------------------------------------------------
    async def send(self, event: NovaEvent) -> None:
        if self._closed or self._finished or self._broken:
            raise SpeechModelError("the stream is closed", code="stream_closed", retryable=False)
        try:
            ((name, body),) = event["event"].items()
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SpeechModelError("input event must be {'event': {<name>: {...}}}", code="ValidationException",
                                   retryable=False) from exc
        if not isinstance(body, dict):
            raise SpeechModelError(f"{name} body must be an object", code="ValidationException", retryable=False)
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            raise SpeechModelError(f"unknown input event {name!r}", code="ValidationException", retryable=False)
        await handler(body)

    async def ready(self) -> None:
        """Nothing to confirm: the models are loaded and the stream is in this process."""

    async def receive(self) -> NovaEvent | None:
        if self._closed and self._out.empty():
            return None
        event = await self._out.get()
        if event is None:
            self._out.put_nowait(None)  # keep answering None to later calls
        if isinstance(event, SpeechModelError):
            raise event
        return event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine._forget(self)
        for task in self._tasks:
            task.cancel()
        if self._speak_task is not None:
            self._speak_task.cancel()
        if self._reply_task is not None:
            self._reply_task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for fut in self._tool_waits.values():
            fut.cancel()
        # The recogniser is simply dropped: a decode may still be finishing on a worker thread, and a
        # pocketsphinx decoder must never be touched from two threads at once (that job holds its own
        # reference and frees it when done). Dropped here, explicitly: the cancelled tasks' tracebacks put this
        # stream, its session and transport in reference cycles that only a full collection frees, which with
        # the loaded models' ~90 000 long-lived objects runs only every many calls; meanwhile every call's ~20 MB
        # decoder and Silero session stayed resident (the per-call "leak" of docs/memory.md).
        self._recognizer = None
        self._tasks.clear()
        self._speak_task = None
        self._reply_task = None
        self._spec = None
        self._tool_waits.clear()
        self._out.put_nowait(None)

    # --- input events ---------------------------------------------------------------------------
    async def _on_sessionStart(self, body: dict[str, Any]) -> None:
        return None

    async def _on_promptStart(self, body: dict[str, Any]) -> None:
        self._prompt_name = str(body.get("promptName", ""))
        tools = (body.get("toolConfiguration") or {}).get("tools")
        if isinstance(tools, list):
            self._declared_tools = {t.get("toolSpec", {}).get("name") for t in tools if isinstance(t, dict)}
        audio_cfg = body.get("audioOutputConfiguration") or {}
        rate = audio_cfg.get("sampleRateHertz", TTS_RATE)
        if rate not in (8000, 16000, 24000):
            raise SpeechModelError(f"unsupported output sample rate {rate}", code="ValidationException",
                                   retryable=False)
        self._output_rate = int(rate)

    async def _on_contentStart(self, body: dict[str, Any]) -> None:
        name = str(body.get("contentName", ""))
        self._contents[name] = {**body, "text": []}
        kind, role = body.get("type"), body.get("role")
        if kind == "AUDIO" and role == "USER" and not self._greeted:
            self._greeted = True
            if self._options.notice:
                self._turns.put_nowait(_Notice(self._options.notice))
            if self._history:  # a renewed stream: carry on the conversation instead of greeting again
                self.dialogue.restore(self._history)
                if self._recognizer is not None:
                    self._recognizer.search = self.dialogue.search
            else:
                self._turns.put_nowait(_Greet())

    async def _on_textInput(self, body: dict[str, Any]) -> None:
        block = self._contents.get(str(body.get("contentName", "")))
        if block is not None:
            block["text"].append(str(body.get("content", "")))

    async def _on_audioInput(self, body: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(body.get("content", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise SpeechModelError("audioInput content is not base64", code="ValidationException",
                                   retryable=False) from exc
        if len(pcm) % 2:
            pcm = pcm[:-1]
        if pcm:
            self._received += len(pcm) // 2
            self._arrivals.append((self._received / ASR_RATE, time.monotonic()))
            self._audio.put_nowait(pcm)

    async def _on_toolResult(self, body: dict[str, Any]) -> None:
        block = self._contents.get(str(body.get("contentName", "")))
        if block is not None:
            block["text"].append(str(body.get("content", "")))

    async def _on_contentEnd(self, body: dict[str, Any]) -> None:
        block = self._contents.pop(str(body.get("contentName", "")), None)
        if block is None:
            return
        text = "".join(block["text"])
        if block.get("type") == "AUDIO":
            self._audio.put_nowait(b"")  # marker: input ended; drop a half-spoken utterance
        elif block.get("type") == "TOOL":
            tool_use_id = (block.get("toolResultInputConfiguration") or {}).get("toolUseId")
            fut = self._tool_waits.pop(str(tool_use_id), None)
            if fut is not None and not fut.done():
                fut.set_result(_parse_tool_result(text))
        elif block.get("type") == "TEXT" and block.get("role") in {"USER", "ASSISTANT"}:
            if block.get("interactive"):
                if block.get("role") == "USER" and text.strip():
                    self._turns.put_nowait(_TextTurn(text))
            elif not self._greeted:
                self._history.append((str(block["role"]), text))

    async def _on_promptEnd(self, body: dict[str, Any]) -> None:
        await self._finish()

    async def _on_sessionEnd(self, body: dict[str, Any]) -> None:
        await self._finish()

    async def _finish(self) -> None:
        """The caller ended the prompt/session: stop work and end the output stream."""
        if not self._finished:
            self._finished = True
            await self.close()

    # --- output helpers: every event from runtime.speech.protocol's builders -------------------
    def _ids(self, content_id: str | None = None) -> OutputIds:
        return OutputIds(self._session_id, self._prompt_name, self._completion_id, content_id)

    def _emit(self, event: NovaEvent) -> None:
        if self._closed or self._broken:
            return
        spec = _SPECULATION.get()
        if spec is not None and (spec.cancelled or (spec is not self._spec and not spec.confirmed.is_set())):
            return  # an abandoned speculative reply: nothing of it is ever sent
        if spec is not None and not spec.confirmed.is_set():
            spec.held.append(event)
            return
        self._out.put_nowait(event)

    def _stamp(self, stage: turn_trace.Stage, at: float | None = None) -> None:
        """A stage stamp; a speculative reply's stamps are taken only if it is confirmed."""
        at = time.monotonic() if at is None else at
        spec = _SPECULATION.get()
        if spec is not None and not spec.confirmed.is_set():
            spec.stamps.append((stage, at))
        elif spec is None or not spec.cancelled:
            turn_trace.mark(stage, at)

    def _text_block(self, role: protocol.Role, stage: protocol.Stage, text: str, stop_reason: str) -> None:
        ids = self._ids(str(uuid.uuid4()))
        self._emit(protocol.text_output_content_start(ids, role, stage))
        self._emit(protocol.text_output(ids, role, text))
        self._emit(protocol.output_content_end(ids, "TEXT", stop_reason))

    def _usage(self, delta: dict[str, int]) -> None:
        for key, value in delta.items():
            self._totals[key] += value

        def shape(d: dict[str, int]) -> dict[str, dict[str, int]]:
            return {"input": {"speechTokens": d.get("in_speech", 0), "textTokens": d.get("in_text", 0)},
                    "output": {"speechTokens": d.get("out_speech", 0), "textTokens": d.get("out_text", 0)}}

        self._emit(protocol.usage_event(self._ids(), delta=shape(delta), total=shape(self._totals)))

    def _wall_time(self, position: float) -> float:
        """Monotonic time at which input audio up to ``position`` seconds had arrived."""
        for seconds, at in self._arrivals:
            if seconds >= position:
                return at
        return time.monotonic()

    # --- tasks ----------------------------------------------------------------------------------
    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._engine._executor, fn, *args)

    async def _asr_loop(self) -> None:
        try:
            while True:
                chunk = await self._audio.get()
                parts = [chunk]
                while not self._audio.empty() and parts[-1]:
                    parts.append(self._audio.get_nowait())  # batch whatever piled up while decoding
                ended = not parts[-1]
                data = b"".join(part for part in parts if part)
                recognizer = self._recognizer
                if recognizer is None:  # closed
                    return
                if data:
                    for event in await self._run(recognizer.feed, data):
                        self._on_asr_event(event)
                if ended:
                    recognizer.abandon()
                    self._abandon_speculation()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("offline engine: recogniser failed")
            self._fail("the speech recogniser failed")

    def _on_asr_event(self, event: SpeechStarted | Utterance | TurnConfirmed | SpeechResumed) -> None:
        if isinstance(event, SpeechStarted):
            self._on_speech_started(event)
        elif isinstance(event, Utterance):
            self._last_utt = event
            self._turns.put_nowait(event)
        elif isinstance(event, TurnConfirmed):
            self._confirm(event)
        else:  # SpeechResumed: the guest went on after a pause; the next utterance holds both parts
            self._superseded_seq = max(self._superseded_seq, event.seq)
            self.superseded_turns += 1
            self._abandon_speculation()

    def _confirm(self, event: TurnConfirmed) -> None:
        self._confirmed_seq = max(self._confirmed_seq, event.seq)
        utt = self._last_utt
        stamps: list[tuple[turn_trace.Stage, float]] = [("endpoint", time.monotonic())]
        if utt is not None and utt.seq == event.seq:
            stamps.append(("speech_end", self._wall_time(utt.voice_end)))
        spec = self._spec
        if spec is not None and spec.seq == event.seq and not spec.cancelled:
            stamps += spec.stamps
            for held in spec.held:
                if not (self._closed or self._broken):
                    self._out.put_nowait(held)
            spec.held.clear()
            if spec.audio_seconds:  # playback of the held audio starts now, on both clocks
                self._play_end_input = (self._recognizer.position if self._recognizer else 0.0) + spec.audio_seconds
                self._play_end_wall = time.monotonic() + spec.audio_seconds
            spec.confirmed.set()
        for stage, at in sorted(stamps, key=lambda s: s[1]):
            turn_trace.mark(stage, at)

    def _abandon_speculation(self) -> None:
        """The guest went on (or the input ended): drop the prepared reply without a trace."""
        spec = self._spec
        if spec is None or spec.confirmed.is_set():
            return
        spec.cancelled = True
        if self._reply_task is not None and not self._reply_task.done():
            self._reply_task.cancel()

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._heard_user = True
        playing = event.at < self._play_end_input and time.monotonic() < self._play_end_wall
        speaking = self._speak_task is not None and not self._speak_task.done()
        if speaking or playing:
            self._interrupt()

    def _interrupt(self) -> None:
        """Barge-in: stop generating and tell the caller to flush, exactly as Nova Sonic signals it."""
        self._play_end_input = self._play_end_wall = 0.0
        if self._speak_task is not None and not self._speak_task.done():
            self._speak_task.cancel()  # _speak emits the interruption events itself
        else:
            self._text_block("ASSISTANT", "FINAL", INTERRUPTED_MARKER, "INTERRUPTED")

    async def _dialogue_loop(self) -> None:
        try:
            while True:
                turn = await self._turns.get()
                if isinstance(turn, Utterance):
                    if turn.seq <= self._superseded_seq:
                        continue  # merged into the continuation that follows
                    await self._reply_to(turn)
                else:
                    await self._handle_turn(turn)
                if self._recognizer is not None:
                    self._recognizer.search = self.dialogue.search
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("offline engine: dialogue failed")
            self._fail("the dialogue failed")

    async def _reply_to(self, utt: Utterance) -> None:
        """Prepare the reply to ``utt`` at once, send it when its end of turn is confirmed (or drop it)."""
        spec = _Speculation(seq=utt.seq, dialogue=copy.deepcopy(self.dialogue), totals=dict(self._totals))
        if self._confirmed_seq >= utt.seq:
            spec.confirmed.set()
        self._spec = spec

        async def run() -> None:
            _SPECULATION.set(spec)
            await self._handle_turn(utt)
            await spec.confirmed.wait()

        task = self._reply_task = asyncio.create_task(run(), name="engine-reply")
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the stream is closing
        finally:
            if spec.cancelled:  # as if the turn never happened
                self.dialogue, self._totals = spec.dialogue, spec.totals
                if self._speak_task is not None:
                    self._speak_task.cancel()
            if self._spec is spec:
                self._spec = None
            self._reply_task = None

    async def _handle_turn(self, turn: _Greet | _Notice | _TextTurn | Utterance) -> None:
        if isinstance(turn, _Notice):
            self._completion_id = str(uuid.uuid4())
            self._emit(protocol.completion_start(self._ids()))
            text = turn.text
            if self._history and self._turns.empty():
                # Taking over a conversation with nothing left to answer: say where it stands, so the
                # guest knows what to say next (a pending question would be answered right after instead).
                text = f"{text} {self.dialogue.next_question()}"
            await self._say(text, answer=False)
            return
        if isinstance(turn, _Greet):
            self._completion_id = str(uuid.uuid4())
            self._emit(protocol.completion_start(self._ids()))
            await self._say(self.dialogue.greeting(), answer=False)
            return
        if isinstance(turn, _TextTurn):
            text = turn.text.strip()
            if not (self._heard_user or self._history) and not self.dialogue.understands(text):
                return  # a "speak first" kick-off prompt after we already greeted
            speech_tokens = 0
        else:
            text = await self._transcribe(turn)
            self._stamp("asr_final")
            speech_tokens = int((turn.end - turn.start) * 25)
        if not text:
            return
        self._completion_id = str(uuid.uuid4())
        self._emit(protocol.completion_start(self._ids()))
        self._text_block("USER", "FINAL", text, "END_TURN")
        self._usage({"in_speech": speech_tokens, "in_text": len(text.split()) if not speech_tokens else 0})
        reply = await self.dialogue.respond(text, self._call_tool)
        self._stamp("decision")
        if reply:
            await self._say(reply)
        else:
            self._emit(protocol.completion_end(self._ids(), "END_TURN"))

    async def _transcribe(self, utt: Utterance) -> str:
        """Domain decode, with the generic model as fallback when the domain text makes no sense here."""
        text = utt.text.strip()
        if not self.dialogue.understands(text) and utt.audio:
            generic = (await self._run(self._models.generic.decode, utt.audio)).strip()
            if generic:
                log.debug("generic fallback: %r -> %r", text, generic)
                text = generic
        return text

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if self._declared_tools is not None and name not in self._declared_tools:
            return {"error": {"code": "tool_unavailable", "message": f"The {name} tool is not available."}}
        spec = _SPECULATION.get()
        if spec is not None:
            # A tool acts (a booking is made): only for a turn the guest has finished. Until then the
            # toolUse would only be held back anyway.
            await spec.confirmed.wait()
        tool_use_id = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._tool_waits[tool_use_id] = fut
        ids = self._ids(str(uuid.uuid4()))
        self._emit(protocol.tool_use_content_start(ids))
        self._emit(protocol.tool_use(ids, name, tool_use_id, arguments))
        self._emit(protocol.output_content_end(ids, "TOOL", "TOOL_USE"))
        try:
            return await asyncio.wait_for(fut, TOOL_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"error": {"code": "timeout", "message": "The booking system did not answer in time."}}
        finally:
            self._tool_waits.pop(tool_use_id, None)
            self._stamp("tool_result")

    async def _say(self, text: str, *, answer: bool = True) -> None:
        """Speak ``text``; ``answer``: it replies to a guest's turn (its stages are stamped)."""
        self._speak_task = asyncio.create_task(self._speak(text, answer), name="engine-speak")
        if not self._closed:
            await asyncio.shield(self._speak_task)
        # Documented: completionEnd only ever says END_TURN; a barge-in shows in the FINAL text block
        # (the interruption marker with stopReason INTERRUPTED), never here (tests/speech/golden).
        self._emit(protocol.completion_end(self._ids(), "END_TURN"))

    def _played(self, seconds: float, first: bool) -> None:
        """Advance the playback clocks by audio just emitted (held audio starts playing when released)."""
        spec = _SPECULATION.get()
        if spec is not None and not spec.confirmed.is_set():
            spec.audio_seconds += seconds
            return
        if first:  # playback starts now, on both clocks
            self._play_end_input = self._recognizer.position if self._recognizer is not None else 0.0
            self._play_end_wall = time.monotonic()
        self._play_end_input += seconds
        self._play_end_wall += seconds

    async def _speak(self, text: str, answer: bool = True) -> bool:
        """SPECULATIVE text, then audio clause by clause, then FINAL text. True if interrupted."""
        self._text_block("ASSISTANT", "SPECULATIVE", text, "PARTIAL_TURN")
        audio_ids: OutputIds | None = None
        spoken: list[str] = []
        try:
            audio_ids = self._ids(str(uuid.uuid4()))
            self._emit(protocol.audio_output_content_start(audio_ids, rate=self._output_rate))
            first = True
            for sentence in split_for_speech(text):
                pcm = trim_silence(await self._run(self._models.tts.synthesize, sentence))
                if first and answer:
                    self._stamp("tts_first_chunk")
                if self._output_rate != TTS_RATE:
                    pcm = _resample(pcm, TTS_RATE, self._output_rate)
                seconds = len(pcm) / 2 / self._output_rate
                step = int(self._output_rate * AUDIO_CHUNK_SECONDS) * 2
                for off in range(0, len(pcm), step):
                    self._emit(protocol.audio_output(audio_ids, pcm[off : off + step]))
                self._played(seconds, first)
                first = False
                spoken.append(sentence)
                self._usage({"out_speech": int(seconds * 25), "out_text": len(sentence.split())})
            self._emit(protocol.output_content_end(audio_ids, "AUDIO", "END_TURN"))
            self._text_block("ASSISTANT", "FINAL", " ".join(spoken), "END_TURN")
            return False
        except asyncio.CancelledError:
            if audio_ids is not None:  # as the service does on barge-in: the audio block ends with END_TURN
                self._emit(protocol.output_content_end(audio_ids, "AUDIO", "END_TURN"))
            self._text_block("ASSISTANT", "FINAL", INTERRUPTED_MARKER, "INTERRUPTED")
            return True

    def _fail(self, message: str) -> None:
        """An internal error ends the stream the way a modelled Nova error would (never silently)."""
        if not (self._closed or self._broken):
            self._broken = True
            self._out.put_nowait(SpeechModelError(message, code="internalServerException", retryable=True))
            self._out.put_nowait(None)


def _parse_tool_result(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"result": text}
    if isinstance(value, str):  # some callers double-encode
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    return value if isinstance(value, dict) else {"result": value}


def _resample(pcm: bytes, src: int, dst: int) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2")
    out: np.ndarray = soxr.resample(samples, src, dst, quality="HQ").astype("<i2")
    return out.tobytes()
