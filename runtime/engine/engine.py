"""The offline engine as a ``SpeechModel``: Nova Sonic's event protocol in and out, all on this machine.

Per stream: a recogniser (endpointer + domain decoder + Silero gate), a dialogue manager, and asyncio
tasks — audio to utterances, utterances to replies, and one task per spoken reply (cancelled on barge-in).
CPU work (decoding, synthesis) runs on the engine's own thread pool, so the event loop that also paces
WebRTC media only ever does queue hand-offs. Models shared by every stream (TTS, generic LM, the built
domain LM files) load once per process in ``warm_up``/first ``open``.

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
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import soxr

from runtime.engine import memory
from runtime.engine.asr import GenericRecognizer, SpeechStarted, StreamingRecognizer, Utterance
from runtime.engine.dialogue import DialogueManager
from runtime.engine.lm.build import LanguageAssets, build_assets
from runtime.engine.tts import SAMPLE_RATE as TTS_RATE
from runtime.engine.tts import Synthesizer, split_sentences
from runtime.settings import Settings
from runtime.speech.model import NovaEvent, SpeechModelError, StreamOptions

log = logging.getLogger("runtime.engine")

AUDIO_CHUNK_SECONDS = 0.08  # audioOutput payload size: small enough to start playback at once
TOOL_TIMEOUT_SECONDS = 15.0
INTERRUPTED_MARKER = '{ "interrupted" : true }'  # the exact text Nova Sonic sends on barge-in
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
        self.dialogue = DialogueManager(
            restaurant=settings.restaurant_name, opening=settings.opening_time, closing=settings.closing_time,
            max_party=settings.max_party_size, fallback_today=lambda: datetime.now(settings.tz).date())

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

    # --- output helpers -------------------------------------------------------------------------
    def _emit(self, name: str, body: dict[str, Any]) -> None:
        if self._closed or self._broken:
            return
        self._out.put_nowait({"event": {name: {"sessionId": self._session_id, "promptName": self._prompt_name,
                                                **body}}})

    def _content_start(self, kind: str, role: str, **extra: Any) -> str:
        content_id = str(uuid.uuid4())
        self._emit("contentStart", {"completionId": self._completion_id, "contentId": content_id, "type": kind,
                                    "role": role, **extra})
        return content_id

    def _content_end(self, content_id: str, kind: str, stop_reason: str) -> None:
        self._emit("contentEnd", {"completionId": self._completion_id, "contentId": content_id, "type": kind,
                                  "stopReason": stop_reason})

    def _text_block(self, role: str, stage: str, text: str, stop_reason: str) -> None:
        cid = self._content_start("TEXT", role, additionalModelFields=json.dumps({"generationStage": stage}),
                                  textOutputConfiguration={"mediaType": "text/plain"})
        self._emit("textOutput", {"completionId": self._completion_id, "contentId": cid, "role": role,
                                  "content": text})
        self._content_end(cid, "TEXT", stop_reason)

    def _usage(self, delta: dict[str, int]) -> None:
        for key, value in delta.items():
            self._totals[key] += value
        t = self._totals

        def shape(d: dict[str, int]) -> dict[str, Any]:
            return {"input": {"speechTokens": d.get("in_speech", 0), "textTokens": d.get("in_text", 0)},
                    "output": {"speechTokens": d.get("out_speech", 0), "textTokens": d.get("out_text", 0)}}

        total_in, total_out = t["in_speech"] + t["in_text"], t["out_speech"] + t["out_text"]
        self._emit("usageEvent", {"completionId": self._completion_id,
                                  "details": {"delta": shape(delta), "total": shape(t)},
                                  "totalInputTokens": total_in, "totalOutputTokens": total_out,
                                  "totalTokens": total_in + total_out})

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
                        if isinstance(event, SpeechStarted):
                            self._on_speech_started(event)
                        else:
                            self._turns.put_nowait(event)
                if ended:
                    recognizer.abandon()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("offline engine: recogniser failed")
            self._fail("the speech recogniser failed")

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
                await self._handle_turn(turn)
                if self._recognizer is not None:
                    self._recognizer.search = self.dialogue.search
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("offline engine: dialogue failed")
            self._fail("the dialogue failed")

    async def _handle_turn(self, turn: _Greet | _Notice | _TextTurn | Utterance) -> None:
        if isinstance(turn, _Notice):
            self._completion_id = str(uuid.uuid4())
            self._emit("completionStart", {"completionId": self._completion_id})
            text = turn.text
            if self._history and self._turns.empty():
                # Taking over a conversation with nothing left to answer: say where it stands, so the
                # guest knows what to say next (a pending question would be answered right after instead).
                text = f"{text} {self.dialogue.next_question()}"
            await self._say(text)
            return
        if isinstance(turn, _Greet):
            self._completion_id = str(uuid.uuid4())
            self._emit("completionStart", {"completionId": self._completion_id})
            await self._say(self.dialogue.greeting())
            return
        if isinstance(turn, _TextTurn):
            text = turn.text.strip()
            if not (self._heard_user or self._history) and not self.dialogue.understands(text):
                return  # a "speak first" kick-off prompt after we already greeted
            speech_tokens = 0
        else:
            text = await self._transcribe(turn)
            speech_tokens = int((turn.end - turn.start) * 25)
        if not text:
            return
        self._completion_id = str(uuid.uuid4())
        self._emit("completionStart", {"completionId": self._completion_id})
        self._text_block("USER", "FINAL", text, "END_TURN")
        self._usage({"in_speech": speech_tokens, "in_text": len(text.split()) if not speech_tokens else 0})
        reply = await self.dialogue.respond(text, self._call_tool)
        if reply:
            await self._say(reply)
        else:
            self._emit("completionEnd", {"completionId": self._completion_id, "stopReason": "END_TURN"})

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
        tool_use_id = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._tool_waits[tool_use_id] = fut
        cid = self._content_start("TOOL", "TOOL", toolUseOutputConfiguration={"mediaType": "application/json"})
        self._emit("toolUse", {"completionId": self._completion_id, "contentId": cid, "toolName": name,
                               "toolUseId": tool_use_id, "content": json.dumps(arguments)})
        self._content_end(cid, "TOOL", "TOOL_USE")
        try:
            return await asyncio.wait_for(fut, TOOL_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"error": {"code": "timeout", "message": "The booking system did not answer in time."}}
        finally:
            self._tool_waits.pop(tool_use_id, None)

    async def _say(self, text: str) -> None:
        self._speak_task = asyncio.create_task(self._speak(text), name="engine-speak")
        interrupted = await asyncio.shield(self._speak_task) if not self._closed else True
        self._emit("completionEnd", {"completionId": self._completion_id,
                                     "stopReason": "INTERRUPTED" if interrupted else "END_TURN"})

    async def _speak(self, text: str) -> bool:
        """SPECULATIVE text, then audio sentence by sentence, then FINAL text. True if interrupted."""
        self._text_block("ASSISTANT", "SPECULATIVE", text, "PARTIAL_TURN")
        audio_id = ""
        spoken: list[str] = []
        try:
            audio_id = self._content_start("AUDIO", "ASSISTANT", audioOutputConfiguration={
                "mediaType": "audio/lpcm", "sampleRateHertz": self._output_rate, "sampleSizeBits": 16,
                "channelCount": 1, "encoding": "base64"})
            first = True
            for sentence in split_sentences(text):
                pcm = await self._run(self._models.tts.synthesize, sentence)
                if self._output_rate != TTS_RATE:
                    pcm = _resample(pcm, TTS_RATE, self._output_rate)
                seconds = len(pcm) / 2 / self._output_rate
                if first:  # playback starts now, on both clocks
                    self._play_end_input = self._recognizer.position if self._recognizer is not None else 0.0
                    self._play_end_wall = time.monotonic()
                    first = False
                self._play_end_input += seconds
                self._play_end_wall += seconds
                step = int(self._output_rate * AUDIO_CHUNK_SECONDS) * 2
                for off in range(0, len(pcm), step):
                    self._emit("audioOutput", {"completionId": self._completion_id, "contentId": audio_id,
                                               "content": base64.b64encode(pcm[off : off + step]).decode()})
                spoken.append(sentence)
                self._usage({"out_speech": int(seconds * 25), "out_text": len(sentence.split())})
            self._content_end(audio_id, "AUDIO", "END_TURN")
            self._text_block("ASSISTANT", "FINAL", " ".join(spoken), "END_TURN")
            return False
        except asyncio.CancelledError:
            if audio_id:
                self._content_end(audio_id, "AUDIO", "INTERRUPTED")
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
