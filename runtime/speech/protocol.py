"""Builders and parsers for the Nova Sonic event protocol (docs/nova-sonic.md).

Every event is a plain dict ``{"event": {"<name>": {...}}}`` built here and serialised with
``json.dumps`` by the transport, never by string templates: guest speech and tool results contain
quotes and newlines that templates would break. Input builders are used by the session core,
output builders by the offline engine. The emulator deliberately does not use them (it has its own
transcription of the docs, ``emulators/nova_sonic_events.py``), and every output builder is checked against
golden samples transcribed from the AWS output-events page (docs/nova-sonic.md, tests/speech/golden).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

NovaEvent = dict[str, Any]
Role = Literal["SYSTEM", "USER", "ASSISTANT", "TOOL"]
Stage = Literal["SPECULATIVE", "FINAL"]

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
# The model's barge-in marker, sent as the text of an assistant textOutput (docs/nova-sonic.md, "Barge-in").
INTERRUPTED_MARKER = '{ "interrupted" : true }'

_TEXT_CONFIG = {"mediaType": "text/plain"}


def _event(name: str, body: dict[str, Any]) -> NovaEvent:
    return {"event": {name: body}}


# --- input events (client -> model) ----------------------------------------------------------------

# Greedy decoding for tool use: AWS's tool-use guidance for Nova Sonic says "Set the value of temperature to 0
# for tool use" (https://docs.aws.amazon.com/nova/latest/userguide/speech-tools-bp.html). This assistant's
# turns exist to call the booking tools with exact arguments, so the session uses it throughout.
TOOL_USE_TEMPERATURE = 0.0


def session_start(*, max_tokens: int = 1024, top_p: float = 0.9, temperature: float = TOOL_USE_TEMPERATURE,
                  endpointing_sensitivity: str | None = "MEDIUM") -> NovaEvent:
    """Nova 2 takes endpointing under ``turnDetectionConfiguration``; flat placement is rejected."""
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": max_tokens, "topP": top_p, "temperature": temperature},
    }
    if endpointing_sensitivity:
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": endpointing_sensitivity}
    return _event("sessionStart", body)


def tool_spec(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The service wants the JSON schema as a JSON *string* inside ``inputSchema.json``."""
    return {"toolSpec": {"name": name, "description": description, "inputSchema": {"json": json.dumps(schema)}}}


def prompt_start(prompt_name: str, *, voice_id: str, tools: list[dict[str, Any]] | None = None,
                 output_rate: int = OUTPUT_RATE) -> NovaEvent:
    body: dict[str, Any] = {
        "promptName": prompt_name,
        "textOutputConfiguration": dict(_TEXT_CONFIG),
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm", "sampleRateHertz": output_rate, "sampleSizeBits": 16,
            "channelCount": 1, "voiceId": voice_id, "encoding": "base64", "audioType": "SPEECH",
        },
    }
    if tools:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = {"toolChoice": {"auto": {}}, "tools": tools}
    return _event("promptStart", body)


def text_content_start(prompt_name: str, content_name: str, role: Role, *, interactive: bool = False) -> NovaEvent:
    return _event("contentStart", {
        "promptName": prompt_name, "contentName": content_name, "type": "TEXT", "interactive": interactive,
        "role": role, "textInputConfiguration": dict(_TEXT_CONFIG),
    })


def text_input(prompt_name: str, content_name: str, text: str) -> NovaEvent:
    return _event("textInput", {"promptName": prompt_name, "contentName": content_name, "content": text})


def content_end(prompt_name: str, content_name: str) -> NovaEvent:
    return _event("contentEnd", {"promptName": prompt_name, "contentName": content_name})


def text_block(prompt_name: str, content_name: str, role: Role, chunks: list[str], *,
               interactive: bool = False) -> list[NovaEvent]:
    """One text content block: contentStart, one textInput per chunk (each at most 1 KB), contentEnd.

    Interactive USER text is Nova 2's cross-modal input, a turn the model answers
    (https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-cross-modal.html). It goes after the audio
    content has opened, and the three events must reach the service back to back: no audioInput may come in
    between (the session holds the segment's send lock around them).
    """
    return [text_content_start(prompt_name, content_name, role, interactive=interactive),
            *(text_input(prompt_name, content_name, chunk) for chunk in chunks),
            content_end(prompt_name, content_name)]


def audio_content_start(prompt_name: str, content_name: str, *, rate: int = INPUT_RATE) -> NovaEvent:
    return _event("contentStart", {
        "promptName": prompt_name, "contentName": content_name, "type": "AUDIO", "interactive": True,
        "role": "USER",
        "audioInputConfiguration": {
            "mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16, "channelCount": 1,
            "audioType": "SPEECH", "encoding": "base64",
        },
    })


def audio_input(prompt_name: str, content_name: str, pcm: bytes) -> NovaEvent:
    return _event("audioInput", {
        "promptName": prompt_name, "contentName": content_name, "content": base64.b64encode(pcm).decode("ascii"),
    })


def tool_content_start(prompt_name: str, content_name: str, tool_use_id: str) -> NovaEvent:
    return _event("contentStart", {
        "promptName": prompt_name, "contentName": content_name, "interactive": False, "type": "TOOL",
        "role": "TOOL",
        "toolResultInputConfiguration": {
            "toolUseId": tool_use_id, "type": "TEXT", "textInputConfiguration": dict(_TEXT_CONFIG),
        },
    })


def tool_result(prompt_name: str, content_name: str, result: Any) -> NovaEvent:
    """``content`` is the result serialised as a JSON string."""
    content = result if isinstance(result, str) else json.dumps(result)
    return _event("toolResult", {"promptName": prompt_name, "contentName": content_name, "content": content})


def prompt_end(prompt_name: str) -> NovaEvent:
    return _event("promptEnd", {"promptName": prompt_name})


def session_end() -> NovaEvent:
    return _event("sessionEnd", {})


# --- output events (model -> client) ---------------------------------------------------------------

def _out(ids: OutputIds, *, with_content_id: bool = True, **body: Any) -> dict[str, Any]:
    """The identifiers of an output event. completionStart, completionEnd and usageEvent are documented
    without a contentId (tests/speech/golden): ``with_content_id=False`` leaves it out even when ``ids`` has one."""
    base: dict[str, Any] = {"sessionId": ids.session_id, "promptName": ids.prompt_name}
    if ids.completion_id is not None:
        base["completionId"] = ids.completion_id
    if with_content_id and ids.content_id is not None:
        base["contentId"] = ids.content_id
    base.update(body)
    return base


@dataclass(frozen=True, slots=True)
class OutputIds:
    session_id: str
    prompt_name: str
    completion_id: str | None = None
    content_id: str | None = None


def completion_start(ids: OutputIds) -> NovaEvent:
    return _event("completionStart", _out(ids, with_content_id=False))


def completion_end(ids: OutputIds, stop_reason: str = "END_TURN") -> NovaEvent:
    return _event("completionEnd", _out(ids, with_content_id=False, stopReason=stop_reason))


def text_output_content_start(ids: OutputIds, role: Role, stage: Stage) -> NovaEvent:
    return _event("contentStart", _out(
        ids, type="TEXT", role=role, additionalModelFields=json.dumps({"generationStage": stage}),
        textOutputConfiguration=dict(_TEXT_CONFIG),
    ))


def text_output(ids: OutputIds, role: Role, text: str) -> NovaEvent:
    return _event("textOutput", _out(ids, role=role, content=text))


def audio_output_content_start(ids: OutputIds, *, rate: int = OUTPUT_RATE) -> NovaEvent:
    return _event("contentStart", _out(
        ids, type="AUDIO", role="ASSISTANT",
        audioOutputConfiguration={"mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16,
                                  "encoding": "base64", "channelCount": 1},
    ))


def audio_output(ids: OutputIds, pcm: bytes) -> NovaEvent:
    return _event("audioOutput", _out(ids, content=base64.b64encode(pcm).decode("ascii")))


def tool_use_content_start(ids: OutputIds) -> NovaEvent:
    return _event("contentStart", _out(ids, type="TOOL", role="TOOL",
                                       toolUseOutputConfiguration={"mediaType": "application/json"}))


def tool_use(ids: OutputIds, tool_name: str, tool_use_id: str, args: dict[str, Any] | str) -> NovaEvent:
    content = args if isinstance(args, str) else json.dumps(args)
    return _event("toolUse", _out(ids, toolName=tool_name, toolUseId=tool_use_id, content=content))


def output_content_end(ids: OutputIds, content_type: str, stop_reason: str) -> NovaEvent:
    return _event("contentEnd", _out(ids, type=content_type, stopReason=stop_reason))


def usage_event(ids: OutputIds, *, delta: dict[str, dict[str, int]], total: dict[str, dict[str, int]]) -> NovaEvent:
    total_in = sum(total.get("input", {}).values())
    total_out = sum(total.get("output", {}).values())
    return _event("usageEvent", _out(
        ids, with_content_id=False, details={"delta": delta, "total": total},
        totalInputTokens=total_in, totalOutputTokens=total_out, totalTokens=total_in + total_out,
    ))


# --- parsers ---------------------------------------------------------------------------------------

class ProtocolError(ValueError):
    """An event that does not have the ``{"event": {name: body}}`` shape."""


def parse(event: Any) -> tuple[str, dict[str, Any]]:
    """Split an event into (name, body); raises ProtocolError on anything else."""
    if not isinstance(event, dict):
        raise ProtocolError("event is not an object")
    inner = event.get("event")
    if not isinstance(inner, dict) or len(inner) != 1:
        raise ProtocolError("event must hold exactly one named body")
    ((name, body),) = inner.items()
    if not isinstance(body, dict):
        raise ProtocolError(f"{name} body is not an object")
    return name, body


def generation_stage(content_start: dict[str, Any]) -> Stage | None:
    """``additionalModelFields`` is itself a JSON string; a missing or bad one means no stage."""
    raw = content_start.get("additionalModelFields")
    if not raw:
        return None
    try:
        fields = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    stage = fields.get("generationStage") if isinstance(fields, dict) else None
    return stage if stage in ("SPECULATIVE", "FINAL") else None


def is_interruption_text(text: str) -> bool:
    return INTERRUPTED_MARKER in text


def strip_interruption(text: str) -> str:
    """Remove the barge-in marker so it is never shown or stored as speech."""
    return text.replace(INTERRUPTED_MARKER, "").strip()


def decode_audio(body: dict[str, Any]) -> bytes:
    return base64.b64decode(body.get("content") or "")
