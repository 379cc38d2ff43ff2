"""A wire-level Amazon Nova Sonic emulator: TLS + HTTP/2 + AWS event-stream, driven by a script.

The real SDK client (``runtime.speech.nova_sonic``) talks to it exactly as it talks to Bedrock, so tests
and benches exercise signing, framing, the CRT transport and error mapping, not a mock of our own code.

Wire behaviour (reference/nova-sonic.md §1.1, §3.3):

- ``POST /model/{modelId}/invoke-with-bidirectional-stream`` over HTTP/2 only (the CRT client never
  does duplex on HTTP/1.1), served by hypercorn with TLS; the 200 with
  ``content-type: application/vnd.amazon.eventstream`` goes out at once, before any input arrives.
- Input frames are the SDK's signed envelopes (``:date`` + ``:chunk-signature``) whose payload is the
  inner ``:event-type=chunk`` message carrying ``{"bytes": base64(Nova JSON)}``; signatures are not
  checked; the empty end frame closes the input.
- Output frames use the same inner format, unsigned; modelled errors are ``:message-type=exception``
  frames, after which the response ends (as the service does).

The "model" is a ``Script``: a list of ``Turn``s consumed in order across all streams (so renewal and
recovery carry on where the conversation was). A user turn starts deterministically when the input
audio has had ``speech_frames`` frames with energy followed by ``end_silence_frames`` quiet frames, or
when an interactive USER text block arrives. The emulator also enforces the protocol rules the
service enforces (event order, history limits, tool-use ids) with the service's ``validationException``
so that mistakes in the session core fail tests the way they would fail in production.

Every stream records the input events it received (``emulator.streams``), so tests can check that a
renewed stream got the history.

Event-stream framing uses ``smithy_aws_event_stream.events`` (the SDK's own codec); nothing here
hand-writes CRC framing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import re
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from smithy_aws_event_stream.events import Event, EventMessage

from runtime.speech import protocol as p

log = logging.getLogger("emulators.nova_sonic")

_PATH_RE = re.compile(r"^/model/(?P<model>[^/]+)/invoke-with-bidirectional-stream$")
_OUT_RATE = 24_000

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

EXCEPTION_TYPES = (
    "validationException", "modelTimeoutException", "throttlingException", "modelStreamErrorException",
    "internalServerException", "serviceUnavailableException",
)


# --- the script ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Say:
    """The assistant speaks ``text``: speculative text, ``audio_ms`` of 24 kHz tone, final text.

    ``text`` may name fields of the latest tool result in braces, e.g. ``"Your id is {booking_id}"``
    (top-level keys and keys of nested objects).
    """

    text: str
    audio_ms: int = 400


@dataclass(frozen=True)
class CallTool:
    """The model calls a tool and waits (up to ``timeout``) for the matching toolResult."""

    name: str
    args: dict[str, Any] | str
    timeout: float = 10.0
    tool_use_id: str | None = None  # reuse an id to emulate a repeated delivery of the same call


@dataclass(frozen=True)
class Interrupt:
    """The assistant starts speaking ``text``, is barged in after ``after_ms`` of audio, and signals it.

    ``signal``: "marker" (textOutput ``{ "interrupted" : true }``), "stop_reason" (contentEnd
    ``INTERRUPTED``) or "both". The remaining audio of the utterance is never sent.
    """

    text: str
    audio_ms: int = 2000
    after_ms: int = 200
    signal: str = "both"


@dataclass(frozen=True)
class Fail:
    """A modelled error frame (``kind`` is one of EXCEPTION_TYPES); the stream then ends."""

    kind: str
    message: str = "injected fault"


@dataclass(frozen=True)
class Pause:
    """The model thinks for ``seconds`` before its next step (a slow reply)."""

    seconds: float


Step = Say | CallTool | Interrupt | Fail | Pause


@dataclass(frozen=True)
class Turn:
    """What happens after one user utterance: the user's transcript, then the model's steps."""

    user_text: str
    steps: tuple[Step, ...] = ()

    def __init__(self, user_text: str, *steps: Step) -> None:
        object.__setattr__(self, "user_text", user_text)
        object.__setattr__(self, "steps", tuple(steps))


@dataclass
class Script:
    turns: list[Turn] = field(default_factory=list)
    # When the turns run out, answer every further utterance with this (None: stay silent).
    fallback: Say | None = Say("Sorry, could you say that again?", 200)


@dataclass
class StreamFault:
    """A fault injected into the next stream opened, after it has received ``after_events`` events
    (or, with ``after_speech_frames``, that many audio frames with energy - mid-utterance)."""

    kind: str
    message: str = "injected fault"
    after_events: int = 1
    after_speech_frames: int | None = None


# --- what each stream saw -------------------------------------------------------------------------

@dataclass
class StreamRecord:
    model_id: str
    headers: dict[str, str]
    opened_at: float
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # exception type sent, if any
    input_closed: bool = False  # the signed empty end frame arrived
    speech_frames: int = 0  # audioInput frames with energy (the caller talking)
    closed_at: float | None = None

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def history(self) -> list[tuple[str, str]]:
        """(role, text) of the non-interactive USER/ASSISTANT text blocks: the replayed history."""
        blocks: dict[str, tuple[str, list[str]]] = {}
        order: list[str] = []
        for name, body in self.events:
            if name == "contentStart" and body.get("type") == "TEXT" and not body.get("interactive") \
                    and body.get("role") in ("USER", "ASSISTANT"):
                blocks[body["contentName"]] = (body["role"], [])
                order.append(body["contentName"])
            elif name == "textInput" and body.get("contentName") in blocks:
                blocks[body["contentName"]][1].append(body.get("content", ""))
        return [(blocks[c][0], "".join(blocks[c][1])) for c in order]

    def audio_frames(self) -> int:
        return sum(1 for name, _ in self.events if name == "audioInput")


class _ValidationError(Exception):
    pass


# --- event-stream framing --------------------------------------------------------------------------

def encode_event(nova_event: dict[str, Any]) -> bytes:
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(nova_event).encode()).decode()}).encode()
    return EventMessage(headers={":message-type": "event", ":event-type": "chunk",
                                 ":content-type": "application/json"}, payload=payload).encode()


def encode_exception(kind: str, message: str) -> bytes:
    return EventMessage(headers={":message-type": "exception", ":exception-type": kind,
                                 ":content-type": "application/json"},
                        payload=json.dumps({"message": message}).encode()).encode()


class FrameReader:
    """Incremental event-stream decoder: feed bytes, get whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[EventMessage]:
        self._buffer += data
        messages: list[EventMessage] = []
        while len(self._buffer) >= 12:
            (total,) = struct.unpack("!I", self._buffer[:4])
            if len(self._buffer) < total:
                break
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            event = Event.decode(io.BytesIO(raw))
            if event is not None:
                messages.append(event.message)
        return messages


def unwrap(outer: EventMessage) -> dict[str, Any] | None:
    """Signed envelope -> Nova event dict; None for the empty end frame."""
    if not outer.payload:
        return None
    inner = Event.decode(io.BytesIO(outer.payload))
    if inner is None:
        return None
    if inner.message.headers.get(":event-type") != "chunk":
        raise _ValidationError(f"unexpected event type {inner.message.headers.get(':event-type')}")
    body = json.loads(inner.message.payload or b"{}")
    return json.loads(base64.b64decode(body.get("bytes") or ""))  # type: ignore[no-any-return]


def tone(ms: int, *, rate: int = _OUT_RATE, freq: float = 440.0, amplitude: int = 3000) -> bytes:
    samples = np.arange(int(rate * ms / 1000))
    wave = (amplitude * np.sin(2 * np.pi * freq * samples / rate)).astype("<i2")
    return wave.tobytes()


def _rms(pcm: bytes) -> float:
    if len(pcm) < 2:
        return 0.0
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples)))


class _Formatter(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fields(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


# --- one emulated stream ---------------------------------------------------------------------------

class _Stream:
    def __init__(self, emulator: NovaSonicEmulator, record: StreamRecord, fault: StreamFault | None) -> None:
        self.emu = emulator
        self.record = record
        self.fault = fault
        self.session_id = str(uuid.uuid4())
        self.prompt_name: str | None = None
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.finished = False
        self.started = False
        self.audio_content: str | None = None
        self.audio_started = False
        self.open_blocks: dict[str, dict[str, Any]] = {}
        self.history_bytes = 0
        self.history_messages = 0
        self.tool_waiters: dict[str, asyncio.Future[Any]] = {}
        self.issued_tool_ids: set[str] = set()
        self.turn_task: asyncio.Task[None] | None = None
        self.speech_run = 0
        self.quiet_run = 0
        self.heard_speech = False
        self.last_input = time.monotonic()
        self.totals = {"input": {"speechTokens": 0, "textTokens": 0}, "output": {"speechTokens": 0, "textTokens": 0}}

    # -- output helpers
    def emit(self, event: dict[str, Any]) -> None:
        if not self.finished:
            self.out.put_nowait(encode_event(event))

    def fail(self, kind: str, message: str) -> None:
        if self.finished:
            return
        self.record.error = kind
        self.out.put_nowait(encode_exception(kind, message))
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.out.put_nowait(None)

    def ids(self, completion_id: str | None = None, content_id: str | None = None) -> p.OutputIds:
        return p.OutputIds(self.session_id, self.prompt_name or "", completion_id, content_id)

    # -- input
    def on_event(self, event: dict[str, Any]) -> None:
        name, body = p.parse(event)
        self.last_input = time.monotonic()
        self.record.events.append((name, body))
        if self.fault is not None:
            if self.fault.after_speech_frames is None:
                due = len(self.record.events) >= self.fault.after_events
            else:
                due = self.record.speech_frames >= self.fault.after_speech_frames
            if due:
                fault, self.fault = self.fault, None
                self.fail(fault.kind, fault.message)
                return
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            raise _ValidationError("Invalid input request")
        handler(body)

    def _on_sessionStart(self, body: dict[str, Any]) -> None:
        if self.started:
            raise _ValidationError("Invalid input request: sessionStart sent twice")
        if "endpointingSensitivity" in body:
            raise _ValidationError("Invalid input request")
        self.started = True

    def _on_promptStart(self, body: dict[str, Any]) -> None:
        if not self.started or self.prompt_name is not None:
            raise _ValidationError("Invalid input request: promptStart out of order")
        self.prompt_name = body.get("promptName")
        tools = (body.get("toolConfiguration") or {}).get("tools") or []
        for tool in tools:
            schema = tool.get("toolSpec", {}).get("inputSchema", {}).get("json")
            if not isinstance(schema, str):
                raise _ValidationError("Invalid input request: tool inputSchema.json must be a string")
            json.loads(schema)

    def _check_prompt(self, body: dict[str, Any]) -> None:
        if self.prompt_name is None or body.get("promptName") != self.prompt_name:
            raise _ValidationError("Invalid input request: unknown promptName")

    def _on_contentStart(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        kind, role = body.get("type"), body.get("role")
        name = body.get("contentName")
        if not name or name in self.open_blocks:
            raise _ValidationError("Invalid input request: bad contentName")
        if kind == "AUDIO":
            if self.audio_content is not None:
                raise _ValidationError("Invalid input request: audio content already open")
            self.audio_content = name
            self.audio_started = True
        elif kind == "TEXT":
            interactive = bool(body.get("interactive"))
            if not interactive and role in ("USER", "ASSISTANT"):
                if self.audio_started:
                    raise _ValidationError("Chat history should be sent completely before streaming audio.")
                if self.history_messages == 0 and role != "USER":
                    raise _ValidationError("Chat history must start with a USER message.")
                self.history_messages += 1
        elif kind == "TOOL":
            tool_use_id = (body.get("toolResultInputConfiguration") or {}).get("toolUseId")
            if tool_use_id not in self.issued_tool_ids:
                raise _ValidationError(f"Invalid toolUseId {tool_use_id}")
        else:
            raise _ValidationError("Invalid input request: unknown content type")
        self.open_blocks[name] = {**body, "_text": []}

    def _on_textInput(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        block = self.open_blocks.get(body.get("contentName", ""))
        if block is None or block.get("type") != "TEXT":
            raise _ValidationError("Invalid input request: textInput outside a text block")
        text = body.get("content", "")
        size = len(text.encode())
        if size > 1024:
            raise _ValidationError("Text input exceeds 1KB; split it into multiple textInput events.")
        if block.get("role") in ("USER", "ASSISTANT") and not block.get("interactive"):
            self.history_bytes += size
            if self.history_bytes > 40 * 1024:
                raise _ValidationError("Chat history exceeds 40KB.")
        block["_text"].append(text)

    def _on_toolResult(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        block = self.open_blocks.get(body.get("contentName", ""))
        if block is None or block.get("type") != "TOOL":
            raise _ValidationError("Invalid input request: toolResult outside a tool block")
        block["_text"].append(body.get("content", ""))

    def _on_contentEnd(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        name = body.get("contentName", "")
        block = self.open_blocks.pop(name, None)
        if block is None:
            raise _ValidationError("Invalid input request: contentEnd for unknown content")
        if block.get("type") == "AUDIO":
            self.audio_content = None
        elif block.get("type") == "TOOL":
            tool_use_id = block["toolResultInputConfiguration"]["toolUseId"]
            raw = "".join(block["_text"])
            try:
                result: Any = json.loads(raw)
            except ValueError:
                result = raw
            self.record.tool_results[tool_use_id] = result
            waiter = self.tool_waiters.pop(tool_use_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
        elif block.get("type") == "TEXT" and block.get("interactive") and block.get("role") == "USER":
            self._start_turn(text_input="".join(block["_text"]))

    def _on_audioInput(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        if body.get("contentName") != self.audio_content:
            raise _ValidationError("Invalid input request: audioInput outside the open audio content")
        if any(b.get("type") == "TEXT" for b in self.open_blocks.values()):
            raise _ValidationError("Invalid input request: audio while a text block is open")
        pcm = base64.b64decode(body.get("content") or "")
        if _rms(pcm) >= self.emu.speech_rms:
            self.record.speech_frames += 1
        self._detect_turn(pcm)

    def _on_promptEnd(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)

    def _on_sessionEnd(self, body: dict[str, Any]) -> None:
        self.record.input_closed = True

    # -- the "model"
    def _detect_turn(self, pcm: bytes) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            return  # the model is answering; the script decides about interruptions
        if _rms(pcm) >= self.emu.speech_rms:
            self.speech_run += 1
            self.quiet_run = 0
            if self.speech_run >= self.emu.speech_frames:
                self.heard_speech = True
        else:
            self.speech_run = 0
            if self.heard_speech:
                self.quiet_run += 1
                if self.quiet_run >= self.emu.end_silence_frames:
                    self.heard_speech = False
                    self.quiet_run = 0
                    self._start_turn(text_input=None)

    def _start_turn(self, *, text_input: str | None) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            return
        turn = self.emu.next_turn()
        if turn is None:
            return
        self.turn_task = asyncio.create_task(self._play(turn, from_text=text_input is not None))

    async def _play(self, turn: Turn, *, from_text: bool) -> None:
        completion = str(uuid.uuid4())
        self.emit(p.completion_start(self.ids(completion)))
        if not from_text:
            ids = self.ids(completion, str(uuid.uuid4()))
            self.emit(p.text_output_content_start(ids, "USER", "FINAL"))
            self.emit(p.text_output(ids, "USER", turn.user_text))
            self.emit(p.output_content_end(ids, "TEXT", "END_TURN"))
        last_result: Any = None
        for step in turn.steps:
            if self.finished:
                return
            if isinstance(step, Say):
                await self._say(completion, step.text.format_map(_Formatter(_fields(last_result))), step.audio_ms)
            elif isinstance(step, Interrupt):
                await self._interrupted(completion, step)
            elif isinstance(step, CallTool):
                last_result = await self._call_tool(completion, step)
                if last_result is None:
                    return
            elif isinstance(step, Fail):
                self.fail(step.kind, step.message)
                return
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
        self.emit(p.completion_end(self.ids(completion), "END_TURN"))

    def _usage(self, completion: str, text: str, audio_ms: int) -> None:
        delta = {"input": {"speechTokens": 10, "textTokens": 2},
                 "output": {"speechTokens": max(1, audio_ms // 40), "textTokens": len(text.split())}}
        for direction, kinds in delta.items():
            for kind, value in kinds.items():
                self.totals[direction][kind] += value
        self.emit(p.usage_event(self.ids(completion), delta=delta,
                                total={d: dict(k) for d, k in self.totals.items()}))

    async def _audio(self, completion: str, audio_ms: int) -> str:
        ids = self.ids(completion, str(uuid.uuid4()))
        self.emit(p.audio_output_content_start(ids))
        pcm = tone(audio_ms)
        step = self.emu.audio_chunk_ms * _OUT_RATE // 1000 * 2
        for offset in range(0, len(pcm), step):
            self.emit(p.audio_output(ids, pcm[offset:offset + step]))
            await asyncio.sleep(0)  # faster than real time, like the service, but let input through
        return ids.content_id or ""

    async def _say(self, completion: str, text: str, audio_ms: int) -> None:
        spec = self.ids(completion, str(uuid.uuid4()))
        self.emit(p.text_output_content_start(spec, "ASSISTANT", "SPECULATIVE"))
        self.emit(p.text_output(spec, "ASSISTANT", text))
        self.emit(p.output_content_end(spec, "TEXT", "PARTIAL_TURN"))
        audio_id = await self._audio(completion, audio_ms)
        self.emit(p.output_content_end(self.ids(completion, audio_id), "AUDIO", "END_TURN"))
        final = self.ids(completion, str(uuid.uuid4()))
        self.emit(p.text_output_content_start(final, "ASSISTANT", "FINAL"))
        self.emit(p.text_output(final, "ASSISTANT", text))
        self.emit(p.output_content_end(final, "TEXT", "END_TURN"))
        self._usage(completion, text, audio_ms)

    async def _interrupted(self, completion: str, step: Interrupt) -> None:
        spec = self.ids(completion, str(uuid.uuid4()))
        self.emit(p.text_output_content_start(spec, "ASSISTANT", "SPECULATIVE"))
        self.emit(p.text_output(spec, "ASSISTANT", step.text))
        self.emit(p.output_content_end(spec, "TEXT", "PARTIAL_TURN"))
        audio_id = await self._audio(completion, min(step.after_ms, step.audio_ms))
        # Observed service order on barge-in: AUDIO ends with END_TURN, then the FINAL text block carries
        # the marker and/or ends with INTERRUPTED (reference §1.4).
        self.emit(p.output_content_end(self.ids(completion, audio_id), "AUDIO", "END_TURN"))
        words = step.text.split()
        spoken = " ".join(words[: max(1, len(words) // 2)])
        final = self.ids(completion, str(uuid.uuid4()))
        self.emit(p.text_output_content_start(final, "ASSISTANT", "FINAL"))
        self.emit(p.text_output(final, "ASSISTANT", spoken))
        if step.signal in ("marker", "both"):
            self.emit(p.text_output(final, "ASSISTANT", p.INTERRUPTED_MARKER))
        stop = "INTERRUPTED" if step.signal in ("stop_reason", "both") else "END_TURN"
        self.emit(p.output_content_end(final, "TEXT", stop))
        self._usage(completion, spoken, step.after_ms)

    async def _call_tool(self, completion: str, step: CallTool) -> Any:
        tool_use_id = step.tool_use_id or str(uuid.uuid4())
        ids = self.ids(completion, str(uuid.uuid4()))
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.tool_waiters[tool_use_id] = waiter
        self.issued_tool_ids.add(tool_use_id)
        self.emit(p.tool_use_content_start(ids))
        self.emit(p.tool_use(ids, step.name, tool_use_id, step.args))
        self.emit(p.output_content_end(ids, "TOOL", "TOOL_USE"))
        try:
            return await asyncio.wait_for(waiter, step.timeout)
        except TimeoutError:
            self.fail("modelTimeoutException", "Model has timed out waiting for the tool result")
            return None

    # -- lifecycle
    async def run(self, receive: ASGIReceive, send: ASGISend) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/vnd.amazon.eventstream"),
            (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        ]})
        reader = asyncio.create_task(self._read(receive))
        watchdog = asyncio.create_task(self._watchdog())
        try:
            while True:
                frame = await self.out.get()
                if frame is None:
                    break
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            # Keep the HTTP/2 stream open until the client has closed its side (it does so as soon as it
            # sees an error or ends the session): hypercorn drops a finished stream's state at once and
            # then fails the whole connection on any DATA frame the client was still sending.
            if not self.emu.stopping:
                await asyncio.wait({reader, self.emu.stopping_event}, timeout=self.emu.input_close_grace_seconds,
                                   return_when=asyncio.FIRST_COMPLETED)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.finished = True
            self.record.closed_at = time.monotonic()
            for task in (reader, watchdog, self.turn_task):
                if task is not None:
                    task.cancel()
            for waiter in self.tool_waiters.values():
                waiter.cancel()

    async def _read(self, receive: ASGIReceive) -> None:
        """Consume the request body to its end; events after the response has finished are discarded."""
        frames = FrameReader()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            if not self.finished:
                try:
                    for outer in frames.feed(message.get("body", b"")):
                        event = unwrap(outer)
                        if event is None:
                            self.record.input_closed = True
                        elif not self.finished:
                            self.on_event(event)
                except _ValidationError as exc:
                    self.fail("validationException", str(exc))
                except Exception as exc:
                    log.exception("emulator could not read the input stream")
                    self.fail("validationException", f"Invalid input request: {exc}")
            if not message.get("more_body", False):
                break
        # Input closed (after sessionEnd): like the service, stop generating and end the response.
        self.record.input_closed = True
        self.finish()

    async def _watchdog(self) -> None:
        while not self.finished:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            limit = self.emu.stream_limit_seconds
            if limit is not None and now - self.record.opened_at >= limit:
                self.fail("modelTimeoutException", "Model has timed out in processing the request")
            idle = self.emu.idle_timeout_seconds
            if idle is not None and now - self.last_input >= idle:
                self.fail("validationException", "Timed out waiting for input events")


# --- the server ------------------------------------------------------------------------------------

class NovaSonicEmulator:
    """ASGI app emulating the Bedrock bidirectional-stream endpoint; ``serve()`` runs it over TLS."""

    def __init__(self, script: Script | None = None, *, stream_limit_seconds: float | None = None,
                 idle_timeout_seconds: float | None = None, speech_rms: float = 300.0, speech_frames: int = 3,
                 end_silence_frames: int = 4, audio_chunk_ms: int = 100,
                 input_close_grace_seconds: float = 10.0) -> None:
        self.script = script or Script()
        self.stream_limit_seconds = stream_limit_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self.speech_rms = speech_rms
        self.speech_frames = speech_frames
        self.end_silence_frames = end_silence_frames
        self.audio_chunk_ms = audio_chunk_ms
        self.input_close_grace_seconds = input_close_grace_seconds
        self.streams: list[StreamRecord] = []
        self.turns_played = 0
        self._faults: list[StreamFault] = []
        self._cursor = 0
        self._live: set[_Stream] = set()
        self.stopping = False
        self.stopping_event: asyncio.Future[None] | None = None

    def inject_stream_fault(self, kind: str, message: str = "injected fault", *, after_events: int = 1,
                            after_speech_frames: int | None = None) -> None:
        """Make the next stream opened fail with ``kind`` after ``after_events`` input events, or after
        ``after_speech_frames`` audio frames with energy (the caller is mid-sentence)."""
        if kind not in EXCEPTION_TYPES:
            raise ValueError(f"unknown exception type {kind}")
        self._faults.append(StreamFault(kind, message, after_events, after_speech_frames))

    def add_turns(self, *turns: Turn) -> None:
        self.script.turns.extend(turns)

    def next_turn(self) -> Turn | None:
        self.turns_played += 1
        if self._cursor < len(self.script.turns):
            turn = self.script.turns[self._cursor]
            self._cursor += 1
            return turn
        if self.script.fallback is None:
            return None
        return Turn("(unscripted)", self.script.fallback)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        match = _PATH_RE.match(scope["path"])
        if scope["method"] != "POST" or match is None:
            body = json.dumps({"message": f"no route for {scope['method']} {scope['path']}"}).encode()
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", b"application/json"), (b"x-amzn-errortype", b"ResourceNotFoundException")]})
            await send({"type": "http.response.body", "body": body})
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        record = StreamRecord(model_id=match.group("model"), headers=headers, opened_at=time.monotonic())
        self.streams.append(record)
        fault = self._faults.pop(0) if self._faults else None
        stream = _Stream(self, record, fault)
        self._live.add(stream)
        try:
            await stream.run(receive, send)
        finally:
            self._live.discard(stream)

    @contextlib.asynccontextmanager
    async def serve(self, certfile: str, keyfile: str, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
        """Serve over TLS + HTTP/2 on a free loopback port; yields the endpoint URL."""
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.config import Config, Sockets
        from hypercorn.utils import wrap_app

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        config = Config()
        config.certfile, config.keyfile = certfile, keyfile
        config.alpn_protocols = ["h2"]
        config.accesslog = None
        config.errorlog = logging.getLogger("emulators.nova_sonic.hypercorn")
        config.graceful_timeout = 1.0
        config.keep_alive_timeout = 60.0
        stop = asyncio.Event()
        self.stopping, self.stopping_event = False, asyncio.get_running_loop().create_future()
        task = asyncio.create_task(worker_serve(wrap_app(self, config.wsgi_max_body_size, "asgi"), config,
                                                sockets=Sockets([sock], [], []), shutdown_trigger=stop.wait))
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
        try:
            yield f"https://{host}:{port}"
        finally:
            # End every stream a client left open, so hypercorn can shut its connections down cleanly
            # (it fails noisily when cancelling an ASGI call that is still streaming).
            self.stopping = True
            self.stopping_event.set_result(None)
            for stream in list(self._live):
                stream.finish()
            for _ in range(100):
                if not self._live:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.warning("emulator server did not shut down cleanly", exc_info=True)
            sock.close()


# --- throwaway TLS material ------------------------------------------------------------------------

@dataclass(frozen=True)
class TestCertificates:
    ca_file: str
    cert_file: str
    key_file: str


def make_test_certificates(directory: str, *, host: str = "127.0.0.1") -> TestCertificates:
    """A fresh CA and a server certificate for ``host`` (IP SAN + localhost), written as PEM files.

    Generated at test time so no key material lives in the repository; valid for one day.
    """
    import datetime as dt
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nova-sonic-emulator test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = TestCertificates(str(folder / "ca.pem"), str(folder / "server.pem"), str(folder / "server.key"))
    Path(paths.ca_file).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.key_file).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return paths


# --- command line: a standalone emulator for local development and benches --------------------------

def main(argv: list[str] | None = None) -> None:
    """``python -m emulators.nova_sonic --tls-dir DIR``: serve until stdin closes or SIGTERM.

    Prints one line ``READY <endpoint-url> <ca-file>`` once listening; point a runtime at it with
    ``SPEECH_ENGINE=nova-sonic AWS_ENDPOINT_URL_BEDROCK_RUNTIME=<url> NOVA_SONIC_CA_BUNDLE=<ca-file>``.
    Every user utterance is answered with the fallback line (there is no script on the command line).
    """
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m emulators.nova_sonic")
    parser.add_argument("--tls-dir", required=True, help="where to write the throwaway CA and server cert")
    parser.add_argument("--stream-limit", type=float, default=None, help="seconds before modelTimeoutException")
    args = parser.parse_args(argv)

    async def serve() -> None:
        certs = make_test_certificates(args.tls_dir)
        emulator = NovaSonicEmulator(Script(), stream_limit_seconds=args.stream_limit)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            print(f"READY {url} {certs.ca_file}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
