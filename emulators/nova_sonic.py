"""A wire-level Amazon Nova Sonic emulator: TLS + HTTP/2 + AWS event-stream, driven by a script.

The real SDK client (``runtime.speech.nova_sonic``) talks to it exactly as it talks to Bedrock, so tests
and benches exercise signing, framing, the CRT transport and error mapping, not a mock of our own code.

Wire behaviour (docs/nova-sonic.md, docs/nova-sonic-emulator.md):

- ``POST /model/{modelId}/invoke-with-bidirectional-stream`` over HTTP/2 only (the CRT client never
  does duplex on HTTP/1.1), served by hypercorn with TLS; the 200 with
  ``content-type: application/vnd.amazon.eventstream`` goes out at once, before any input arrives.
- The request's SigV4 signature (service ``bedrock``, the configured region, ``x-amz-content-sha256:
  STREAMING-AWS4-HMAC-SHA256-EVENTS``, the session token of temporary keys) is verified against the
  ``CredentialBook`` the emulator is given, before anything else, with AWS's 403 errors
  (``emulators.sigv4``). Input frames are the SDK's signed envelopes (``:date`` + ``:chunk-signature``)
  whose payload is the inner ``:event-type=chunk`` message carrying ``{"bytes": base64(Nova JSON)}``;
  every envelope's signature is verified against the chain seeded by the request's signature; the empty
  end frame closes the input.
- Output frames use the same inner format, unsigned; modelled errors are ``:message-type=exception``
  frames, after which the response ends (as the service does). The output events are built by
  ``emulators.nova_sonic_events``, transcribed from the AWS output-events page - never with the client's
  builders in ``runtime.speech.protocol``, so a wrong client builder cannot be mirrored here; both are checked
  against golden samples of that page (``tests/speech/golden``).

Every rule, its public source and its switch are listed in docs/nova-sonic-emulator.md.

The "model" is a ``Script``: a list of ``Turn``s consumed in order across all streams (so renewal and
recovery carry on where the conversation was). A user turn starts deterministically when the input
audio has had ``speech_frames`` frames with energy followed by the end-of-turn pause of quiet audio, or
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
from typing import Any, cast

import numpy as np
from smithy_aws_event_stream.events import Event, EventMessage

from emulators import nova_sonic_events as out
from emulators.identity import CredentialBook
from emulators.sigv4 import EVENT_STREAM_PAYLOAD, EventSignatureChain, SigV4Error, VerifiedRequest, verify_request
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

# The Nova Sonic model ids (https://docs.aws.amazon.com/nova/latest/nova2-userguide/using-conversational-speech.html,
# https://docs.aws.amazon.com/nova/latest/userguide/speech.html). Anything else is refused before a stream opens.
NOVA_2_SONIC = "amazon.nova-2-sonic-v1:0"
NOVA_SONIC_V1 = "amazon.nova-sonic-v1:0"
MODEL_IDS = (NOVA_2_SONIC, NOVA_SONIC_V1)
# Voice ids per model. Nova 2: the 16 voices of the Nova 2 language-support page
# (https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-language-support.html; the same list is in
# livekit-plugins-aws ``types.py``): polyglot tiffany/matthew (en-US), amy/olivia (en-GB/en-AU), kiara/arjun
# (en-IN, Hindi), ambre/florian (fr), beatrice/lorenzo (it), tina/lennart (de), lupe/carlos (es-US),
# carolina/leo (pt-BR). Nova Sonic v1: the 11 voices of
# https://docs.aws.amazon.com/nova/latest/userguide/available-voices.html (greta instead of tina).
VOICES: dict[str, frozenset[str]] = {
    NOVA_2_SONIC: frozenset({"tiffany", "matthew", "amy", "olivia", "kiara", "arjun", "ambre", "florian", "beatrice",
                             "lorenzo", "tina", "lennart", "lupe", "carlos", "carolina", "leo"}),
    NOVA_SONIC_V1: frozenset({"tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo", "greta",
                              "lennart", "lupe", "carlos"}),
}
# End-of-turn pause per endpointingSensitivity
# (https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-turn-taking.html).
TURN_PAUSE_SECONDS = {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}
DEFAULT_SENSITIVITY = "MEDIUM"  # assumed when sessionStart has no turnDetectionConfiguration (the docs' middle)
SAMPLE_RATES = (8_000, 16_000, 24_000)
# The 8-minute connection limit: the SDK docstring of invoke_model_with_bidirectional_stream ("remains open for
# 8 minutes") and amazon-nova-samples#147 (ModelTimeoutException after about 8 minutes).
STREAM_LIMIT_SECONDS = 480.0
# No input events for this long: "ValidationException: Timed out waiting for input events". The exact value is
# not documented; third-party reports range from ~60 s to 175 s - the stricter one is used.
IDLE_TIMEOUT_SECONDS = 60.0


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
    """The model calls a tool and waits (up to ``timeout``) for the matching toolResult.

    ``double_encoded``: the arguments arrive as a JSON string holding the JSON object (the model does this
    now and then; livekit ``test_nova_sonic_tool_args.py``).
    """

    name: str
    args: dict[str, Any] | str
    timeout: float = 10.0
    tool_use_id: str | None = None  # reuse an id to emulate a repeated delivery of the same call
    double_encoded: bool = False


@dataclass(frozen=True)
class CutFrame:
    """The next output frame is cut short and the response ends: the SDK raises ``InvalidEventBytes``."""


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


Step = Say | CallTool | Interrupt | Fail | Pause | CutFrame


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
    access_key_id: str | None = None  # whose verified signature opened the stream
    verified_events: int = 0  # input envelopes whose chunk signature was verified
    turn_pause_seconds: float | None = None  # the end-of-turn pause applied on this stream
    after_end: list[str] = field(default_factory=list)  # event names received after the response ended
    text_inputs: list[str] = field(default_factory=list)  # interactive (cross-modal) USER texts received

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


# inferenceConfiguration ranges: topP and temperature 0..1 (Nova inference parameters,
# https://docs.aws.amazon.com/nova/latest/userguide/complete-request-schema.html), maxTokens a positive integer
# up to Nova 2 Sonic's output limit (64K tokens, Nova 2 model card).
MAX_TOKENS_LIMIT = 65_536


def _check_inference(config: Any) -> None:
    if not isinstance(config, dict):
        raise _ValidationError("Invalid input request: inferenceConfiguration is required")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS_LIMIT):
        raise _ValidationError(f"Invalid maxTokens {max_tokens!r}: must be an integer in [1, {MAX_TOKENS_LIMIT}]")
    for name in ("topP", "temperature"):
        value = config.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0.0 <= value <= 1.0):
            raise _ValidationError(f"Invalid {name} {value!r}: must be a number in [0, 1]")


def _check_media(config: Any, name: str, media_type: str) -> None:
    if not isinstance(config, dict) or config.get("mediaType") != media_type:
        raise _ValidationError(f"Invalid input request: {name}.mediaType must be {media_type}")


def _check_audio(config: Any, name: str) -> None:
    """LPCM only, 8/16/24 kHz, 16-bit, mono, base64, SPEECH (the input/output audio configuration tables of
    https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-input-events.html)."""
    _check_media(config, name, "audio/lpcm")
    expected: dict[str, tuple[Any, ...]] = {"sampleRateHertz": SAMPLE_RATES, "sampleSizeBits": (16,),
                                            "channelCount": (1,), "encoding": ("base64",), "audioType": ("SPEECH",)}
    for key, allowed in expected.items():
        if config.get(key) not in allowed:
            raise _ValidationError(f"Invalid input request: {name}.{key} {config.get(key)!r} is not one of "
                                   f"{', '.join(map(str, allowed))}")


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
        raise _ValidationError(f"unexpected event type {inner.message.headers.get(':event-type')!r}")
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
    def __init__(self, emulator: NovaSonicEmulator, record: StreamRecord, fault: StreamFault | None,
                 verified: VerifiedRequest) -> None:
        self.emu = emulator
        self.record = record
        self.fault = fault
        self.chain = EventSignatureChain(verified)
        self.ended = False  # sessionEnd arrived: nothing may follow
        self.prompt_ended = False
        self.content_blocks = 0
        self.pause_seconds = emulator.turn_pause_seconds
        self.quiet_seconds = 0.0
        self.last_completion: out.Completion | None = None
        self.abrupt = False
        self.session_id = str(uuid.uuid4())
        self.prompt_name: str | None = None
        self.output_rate = _OUT_RATE  # promptStart's audioOutputConfiguration.sampleRateHertz
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.finished = False
        self.started = False
        self.audio_content: str | None = None
        self.audio_started = False
        self.user_input_started = False  # interactive input (audio or cross-modal text) has begun
        self.open_blocks: dict[str, dict[str, Any]] = {}
        self.history_bytes = 0
        self.history_messages = 0
        self.tool_waiters: dict[str, asyncio.Future[Any]] = {}
        self.issued_tool_ids: set[str] = set()
        self.turn_task: asyncio.Task[None] | None = None
        self.speech_run = 0
        self.heard_speech = False
        self.last_input = time.monotonic()
        self.last_usage = time.monotonic()
        self.totals = {"input": {"speechTokens": 0, "textTokens": 0}, "output": {"speechTokens": 0, "textTokens": 0}}

    # -- output helpers
    def emit(self, event: dict[str, Any]) -> None:
        if not self.finished:
            self.out.put_nowait(encode_event(event))

    def fail(self, kind: str, message: str) -> None:
        if self.finished:
            return
        self.record.error = kind
        log.info("stream fails with %s: %s", kind, message)
        self.out.put_nowait(encode_exception(kind, message))
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.out.put_nowait(None)

    def cut_frame(self) -> None:
        """Send the first half of an event frame, then end the response (a frame cut short)."""
        if self.finished:
            return
        frame = encode_event(out.text_output(self.completion(), str(uuid.uuid4()), "ASSISTANT", "cut"))
        self.record.error = "InvalidEventBytes"
        self.abrupt = True  # end the response right after the partial frame
        self.out.put_nowait(frame[: len(frame) // 2])
        self.finish()

    def completion(self) -> out.Completion:
        """The completion in progress (or the last one); a fresh one if none has started yet."""
        if self.last_completion is None:
            self.last_completion = out.Completion(self.session_id, self.prompt_name or "", str(uuid.uuid4()))
        return self.last_completion

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
        if self.ended:
            raise _ValidationError(f"Invalid input request: {name} after sessionEnd")
        if not self.started and name != "sessionStart":
            raise _ValidationError(f"Invalid input request: {name} before sessionStart")
        if self.prompt_ended and name != "sessionEnd":
            raise _ValidationError(f"Invalid input request: {name} after promptEnd")
        handler(body)

    def _on_sessionStart(self, body: dict[str, Any]) -> None:
        if self.started:
            raise _ValidationError("Invalid input request: sessionStart sent twice")
        if "endpointingSensitivity" in body:
            raise _ValidationError("Invalid input request")
        _check_inference(body.get("inferenceConfiguration"))
        detection = body.get("turnDetectionConfiguration")
        sensitivity = DEFAULT_SENSITIVITY
        if detection is not None:
            if self.record.model_id != NOVA_2_SONIC:
                raise _ValidationError("Invalid input request: turnDetectionConfiguration is not supported")
            requested = (detection or {}).get("endpointingSensitivity")
            if not isinstance(requested, str) or requested not in TURN_PAUSE_SECONDS:
                raise _ValidationError(f"Invalid endpointingSensitivity {requested!r}; use HIGH, MEDIUM or LOW")
            sensitivity = requested
        if self.pause_seconds is None:
            self.pause_seconds = TURN_PAUSE_SECONDS[sensitivity]
        self.record.turn_pause_seconds = self.pause_seconds
        self.started = True

    def _on_promptStart(self, body: dict[str, Any]) -> None:
        if not self.started or self.prompt_name is not None:
            raise _ValidationError("Invalid input request: promptStart out of order")
        self.prompt_name = body.get("promptName")
        if not self.prompt_name:
            raise _ValidationError("Invalid input request: promptName is required")
        _check_media(body.get("textOutputConfiguration"), "textOutputConfiguration", "text/plain")
        audio = body.get("audioOutputConfiguration")
        _check_audio(audio, "audioOutputConfiguration")
        self.output_rate = int((audio or {})["sampleRateHertz"])  # _check_audio has vouched for it
        voice = (audio or {}).get("voiceId")
        if voice not in VOICES[self.record.model_id]:
            raise _ValidationError(f"Received invalid id: '{voice}'. "
                                   "Please check AWS documentation for valid voiceIds.")
        if "toolUseOutputConfiguration" in body:
            _check_media(body["toolUseOutputConfiguration"], "toolUseOutputConfiguration", "application/json")
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
        self.content_blocks += 1
        if role == "SYSTEM":
            if kind != "TEXT" or self.content_blocks != 1:
                raise _ValidationError("Invalid input request: the system prompt must be the first content")
        elif self.content_blocks == 1:
            raise _ValidationError("Invalid input request: the first content must be the SYSTEM prompt")
        if kind == "AUDIO":
            if role != "USER":
                raise _ValidationError("Invalid input request: audio input must have role USER")
            _check_audio(body.get("audioInputConfiguration"), "audioInputConfiguration")
            if self.audio_content is not None:
                raise _ValidationError("Invalid input request: audio content already open")
            self.audio_content = name
            self.audio_started = True
            self.user_input_started = True
        elif kind == "TEXT":
            if role not in ("SYSTEM", "USER", "ASSISTANT"):
                raise _ValidationError(f"Invalid input request: role {role} for text content")
            _check_media(body.get("textInputConfiguration"), "textInputConfiguration", "text/plain")
            interactive = bool(body.get("interactive"))
            if interactive and role == "USER":
                # Cross-modal input (Nova 2 only) "requires an active streaming session": the audio content
                # must be open. Whether the service refuses text before it is not documented; refused here.
                if self.record.model_id != NOVA_2_SONIC:
                    raise _ValidationError("Invalid input request: cross-modal text input is not supported")
                if self.audio_content is None:
                    raise _ValidationError("Invalid input request: interactive text needs an open audio content")
                self.user_input_started = True
            if not interactive and role in ("USER", "ASSISTANT"):
                if self.user_input_started:
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
            text = "".join(block["_text"])
            self.record.text_inputs.append(text)
            self._start_turn(text_input=text)

    def _on_audioInput(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        if body.get("contentName") != self.audio_content:
            raise _ValidationError("Invalid input request: audioInput outside the open audio content")
        if any(b.get("type") == "TEXT" for b in self.open_blocks.values()):
            raise _ValidationError("Invalid input request: audio while a text block is open")
        try:
            pcm = base64.b64decode(body.get("content") or "", validate=True)
        except ValueError:
            raise _ValidationError("Invalid input request: audioInput content is not base64") from None
        if len(pcm) % 2:
            raise _ValidationError("Invalid input request: audio is not whole 16-bit samples")
        if _rms(pcm) >= self.emu.speech_rms:
            self.record.speech_frames += 1
        self._detect_turn(pcm)

    def _on_promptEnd(self, body: dict[str, Any]) -> None:
        self._check_prompt(body)
        self.prompt_ended = True

    def _on_sessionEnd(self, body: dict[str, Any]) -> None:
        self.ended = True
        self.record.input_closed = True

    # -- the "model"
    def _detect_turn(self, pcm: bytes) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            return  # the model is answering; the script decides about interruptions
        if _rms(pcm) >= self.emu.speech_rms:
            self.speech_run += 1
            self.quiet_seconds = 0.0
            if self.speech_run >= self.emu.speech_frames:
                self.heard_speech = True
        else:
            self.speech_run = 0
            if self.heard_speech:
                # The turn ends after the pause the session's endpointingSensitivity gives (or the test
                # override), measured in audio time, not in frames.
                self.quiet_seconds += len(pcm) / 2 / p.INPUT_RATE
                if self.quiet_seconds + 1e-9 >= (self.pause_seconds or 0.0):
                    self.heard_speech = False
                    self.quiet_seconds = 0.0
                    self._start_turn(text_input=None)

    def _start_turn(self, *, text_input: str | None) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            return
        turn = self.emu.next_turn()
        if turn is None:
            return
        self.turn_task = asyncio.create_task(self._play(turn, text_input=text_input))

    async def _play(self, turn: Turn, *, text_input: str | None) -> None:
        completion = out.Completion(self.session_id, self.prompt_name or "", str(uuid.uuid4()))
        self.last_completion = completion
        self.emit(out.completion_start(completion))
        heard = turn.user_text if text_input is None else (text_input if self.emu.echo_text_input else None)
        if heard is not None:
            asr = str(uuid.uuid4())
            self.emit(out.text_content_start(completion, asr, "USER", "FINAL"))
            self.emit(out.text_output(completion, asr, "USER", heard))
            self.emit(out.text_content_end(completion, asr, "END_TURN"))
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
            elif isinstance(step, CutFrame):
                self.cut_frame()
                return
        if self.emu.completion_end:
            self.emit(out.completion_end(completion))

    def _usage(self, completion: out.Completion, text: str, audio_ms: int, *, idle: bool = False) -> None:
        self.last_usage = time.monotonic()
        delta = {"input": {"speechTokens": 10, "textTokens": 0 if idle else 2},
                 "output": {"speechTokens": 0 if idle else max(1, audio_ms // 40), "textTokens": len(text.split())}}
        for direction, kinds in delta.items():
            for kind, value in kinds.items():
                self.totals[direction][kind] += value
        self.emit(out.usage_event(completion, delta, self.totals))

    async def _audio(self, completion: out.Completion, audio_ms: int) -> str:
        content_id = str(uuid.uuid4())
        self.emit(out.audio_content_start(completion, content_id, self.output_rate))
        pcm = tone(audio_ms, rate=self.output_rate)
        step = self.emu.audio_chunk_ms * self.output_rate // 1000 * 2
        for offset in range(0, len(pcm), step):
            self.emit(out.audio_output(completion, content_id, pcm[offset:offset + step]))
            await asyncio.sleep(0)  # faster than real time, like the service, but let input through
        return content_id

    def _text_block(self, completion: out.Completion, stage: out.Stage, texts: tuple[str, ...], stop: str) -> None:
        content_id = str(uuid.uuid4())
        self.emit(out.text_content_start(completion, content_id, "ASSISTANT", stage))
        for text in texts:
            self.emit(out.text_output(completion, content_id, "ASSISTANT", text))
        self.emit(out.text_content_end(completion, content_id, stop))

    async def _say(self, completion: out.Completion, text: str, audio_ms: int) -> None:
        self._text_block(completion, "SPECULATIVE", (text,), "PARTIAL_TURN")
        audio_id = await self._audio(completion, audio_ms)
        self.emit(out.audio_content_end(completion, audio_id, "END_TURN"))
        self._text_block(completion, "FINAL", (text,), "END_TURN")
        self._usage(completion, text, audio_ms)

    async def _interrupted(self, completion: out.Completion, step: Interrupt) -> None:
        self._text_block(completion, "SPECULATIVE", (step.text,), "PARTIAL_TURN")
        audio_id = await self._audio(completion, min(step.after_ms, step.audio_ms))
        # Observed service order on barge-in: AUDIO ends with END_TURN, then the FINAL text block carries
        # the marker and/or ends with INTERRUPTED (docs/nova-sonic.md "Event order", Barge-in).
        self.emit(out.audio_content_end(completion, audio_id, "END_TURN"))
        words = step.text.split()
        spoken = " ".join(words[: max(1, len(words) // 2)])
        marker = (out.INTERRUPTED_MARKER,) if step.signal in ("marker", "both") else ()
        stop = "INTERRUPTED" if step.signal in ("stop_reason", "both") else "END_TURN"
        self._text_block(completion, "FINAL", (spoken, *marker), stop)
        self._usage(completion, spoken, step.after_ms)

    async def _call_tool(self, completion: out.Completion, step: CallTool) -> Any:
        tool_use_id = step.tool_use_id or str(uuid.uuid4())
        content_id = str(uuid.uuid4())
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.tool_waiters[tool_use_id] = waiter
        self.issued_tool_ids.add(tool_use_id)
        self.emit(out.tool_content_start(completion, content_id))
        args = step.args if isinstance(step.args, str) else json.dumps(step.args)
        if step.double_encoded or self.emu.double_encode_tool_args:
            args = json.dumps(args)  # a JSON string holding the JSON object
        self.emit(out.tool_use(completion, content_id, step.name, tool_use_id, args))
        self.emit(out.tool_content_end(completion, content_id))
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
            stopping = self.emu.stopping_event
            if not self.emu.stopping and not self.abrupt and stopping is not None:
                await asyncio.wait({reader, stopping}, timeout=self.emu.input_close_grace_seconds,
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
                        self.chain.verify(outer)
                        self.record.verified_events = self.chain.verified_events
                        event = unwrap(outer)
                        if event is None:
                            self.record.input_closed = True
                        elif not self.finished:
                            self.on_event(event)
                except _ValidationError as exc:
                    self.fail("validationException", str(exc))
                except SigV4Error as exc:
                    self.fail("validationException", f"Invalid event signature: {exc.message}")
                except Exception as exc:
                    log.exception("emulator could not read the input stream")
                    self.fail("validationException", f"Invalid input request: {exc}")
            else:
                # The response has ended (an error, the limit): what the client still sends is not acted
                # on, only recorded - a well-behaved client closes with promptEnd/sessionEnd.
                with contextlib.suppress(Exception):
                    for outer in frames.feed(message.get("body", b"")):
                        event = unwrap(outer)
                        if event is not None:
                            self.record.after_end.append(p.parse(event)[0])
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
            every = self.emu.idle_usage_seconds
            if every is not None and self.last_completion is not None and now - self.last_usage >= every and (
                    self.turn_task is None or self.turn_task.done()):
                # The service keeps reporting usage while nobody speaks (the input audio is billed). The
                # documented usageEvent always carries a completionId, so this starts after the first one.
                self.last_usage = now
                self._usage(self.last_completion, "", 0, idle=True)


# --- the server ------------------------------------------------------------------------------------

class NovaSonicEmulator:
    """ASGI app emulating the Bedrock bidirectional-stream endpoint; ``serve()`` runs it over TLS."""

    def __init__(self, script: Script | None = None, *, credentials: CredentialBook | None = None,
                 region: str = "us-east-1", stream_limit_seconds: float | None = STREAM_LIMIT_SECONDS,
                 idle_timeout_seconds: float | None = IDLE_TIMEOUT_SECONDS, turn_pause_seconds: float | None = None,
                 idle_usage_seconds: float | None = 1.0, completion_end: bool = True,
                 double_encode_tool_args: bool = False, max_concurrent_streams: int = 100,
                 speech_rms: float = 300.0, speech_frames: int = 3, audio_chunk_ms: int = 100,
                 input_close_grace_seconds: float = 10.0, echo_text_input: bool = False) -> None:
        """Service behaviour by default; each switch is a documented departure (docs/nova-sonic-emulator.md).

        ``credentials``: the book every signature is verified against; None gives an empty book
        (``self.credentials``) to add keys to - every request is verified, there is no unsigned mode.
        ``turn_pause_seconds``: None (the service) takes the pause of the session's endpointingSensitivity;
        tests set a short one explicitly. ``idle_usage_seconds``: usageEvent cadence while nobody speaks.
        ``completion_end``: whether a completion ends with completionEnd (the docs list it; samples rarely
        see it before the session ends) - test both.
        ``echo_text_input``: whether a turn started by interactive (cross-modal) text begins with that text as
        a USER transcript, as a turn started by speech does. The docs do not say - test both.
        """
        self.script = script or Script()
        self.credentials = credentials if credentials is not None else CredentialBook()
        self.region = region
        self.stream_limit_seconds = stream_limit_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self.turn_pause_seconds = turn_pause_seconds
        self.idle_usage_seconds = idle_usage_seconds
        self.completion_end = completion_end
        self.double_encode_tool_args = double_encode_tool_args
        self.max_concurrent_streams = max_concurrent_streams
        self.speech_rms = speech_rms
        self.speech_frames = speech_frames
        self.audio_chunk_ms = audio_chunk_ms
        self.input_close_grace_seconds = input_close_grace_seconds
        self.echo_text_input = echo_text_input
        self.refusals: list[SigV4Error] = []  # requests refused before a stream opened
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
        try:
            verified = self._admit(scope, headers, match.group("model"))
        except SigV4Error as refusal:
            self.refusals.append(refusal)
            await send({"type": "http.response.start", "status": refusal.status, "headers": [
                *refusal.headers(), (b"x-amzn-requestid", str(uuid.uuid4()).encode())]})
            await send({"type": "http.response.body", "body": refusal.body()})
            return
        record = StreamRecord(model_id=match.group("model"), headers=headers, opened_at=time.monotonic(),
                              access_key_id=verified.credentials.access_key_id)
        self.streams.append(record)
        fault = self._faults.pop(0) if self._faults else None
        stream = _Stream(self, record, fault, verified)
        self._live.add(stream)
        try:
            await stream.run(receive, send)
        finally:
            self._live.discard(stream)

    def _admit(self, scope: dict[str, Any], headers: dict[str, str], model_id: str) -> VerifiedRequest:
        """What the service checks before opening a stream: the signature first, then the request itself."""
        if "host" not in headers:  # HTTP/2 carries it as :authority, which hypercorn does not pass on as host
            server = scope.get("server") or ("127.0.0.1", 443)
            headers = {**headers, "host": f"{server[0]}:{server[1]}"}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        verified = verify_request(
            method=scope["method"], path=raw_path.decode(), query=scope.get("query_string", b"").decode(),
            headers=headers, book=self.credentials, service="bedrock", region=self.region)
        if headers.get("x-amz-content-sha256") != EVENT_STREAM_PAYLOAD:
            raise SigV4Error("InvalidSignatureException",
                             f"x-amz-content-sha256 must be {EVENT_STREAM_PAYLOAD} for an event-stream request")
        if headers.get("content-type") != "application/vnd.amazon.eventstream":
            raise SigV4Error("ValidationException", "Invalid content type; expected application/vnd.amazon.eventstream",
                             status=400)
        if model_id.replace("%3A", ":") not in MODEL_IDS:
            raise SigV4Error("ValidationException", "The provided model identifier is invalid.", status=400)
        return verified

    @contextlib.asynccontextmanager
    async def serve(self, certfile: str, keyfile: str, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
        """Serve over TLS + HTTP/2 on a free loopback port; yields the endpoint URL."""
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.config import Config, Sockets
        from hypercorn.typing import ASGIFramework
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
        config.h2_max_concurrent_streams = self.max_concurrent_streams
        stop = asyncio.Event()
        self.stopping, self.stopping_event = False, asyncio.get_running_loop().create_future()
        # hypercorn's ASGIFramework type names its own scope TypedDicts; this app takes the same dicts untyped.
        app = cast(ASGIFramework, self)
        task = asyncio.create_task(worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
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

    Prints one line ``READY <endpoint-url> <ca-file> <access-key-id> <secret-access-key>`` once listening:
    the emulator verifies every signature, and these long-term keys (minted at start, region us-east-1) are
    the only ones it accepts. Point a runtime at it with ``SPEECH_ENGINE=nova-sonic
    AWS_ENDPOINT_URL_BEDROCK_RUNTIME=<url> NOVA_SONIC_CA_BUNDLE=<ca-file> AWS_ACCESS_KEY_ID=<key>
    AWS_SECRET_ACCESS_KEY=<secret>``. The first turn (the runtime's greeting prompt, docs/greeting.md) is
    answered with a greeting, every later one with the fallback line.
    """
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m emulators.nova_sonic")
    parser.add_argument("--tls-dir", required=True, help="where to write the throwaway CA and server cert")
    parser.add_argument("--stream-limit", type=float, default=STREAM_LIMIT_SECONDS,
                        help="seconds before modelTimeoutException (the service: 480)")
    args = parser.parse_args(argv)

    async def serve() -> None:
        certs = make_test_certificates(args.tls_dir)
        book = CredentialBook()
        keys = book.issue(lifetime_seconds=None, temporary=False)
        script = Script([Turn("(the greeting prompt)", Say("Hello, thanks for calling. How can I help you today?"))])
        emulator = NovaSonicEmulator(script, credentials=book, stream_limit_seconds=args.stream_limit)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        stdin = cast("io.BufferedReader", sys.stdin.buffer)  # a pipe from the parent: buffered, has read1
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not stdin.read1(4096) else None)
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            print(f"READY {url} {certs.ca_file} {keys.access_key_id} {keys.secret_access_key}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
