"""The emulator's output events, transcribed from the AWS documentation - not the client's builders.

Why a second set of builders: the emulator used to send what ``runtime.speech.protocol`` built, so the client
and its stand-in shared every spelling and a wrong field passed every test. These are written from the
documented samples of "Handling output events with the bidirectional API"
(https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-output-events.html; the Nova Sonic v1 page
https://docs.aws.amazon.com/nova/latest/userguide/output-events.html has the same fields), so a builder in
``runtime/speech/protocol.py`` that drifts from the docs is caught where the client meets the emulator, and
both are checked against golden copies of those samples (``tests/speech/golden``, docs/nova-sonic.md).

Each function names the section of the page it transcribes. Departures from the documented sample are
only those the service is known to make, each with its source.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

Event = dict[str, Any]
TextRole = Literal["USER", "ASSISTANT"]
Stage = Literal["SPECULATIVE", "FINAL"]

OUTPUT_RATES = (8_000, 16_000, 24_000)  # "sampleRateHertz": 8000 | 16000 | 24000
# The barge-in marker: the text of an ASSISTANT textOutput. Not on the output-events page; every official
# sample tests for this literal (nova_sonic.py in
# https://github.com/aws-samples/amazon-nova-samples/tree/main/speech-to-speech/amazon-nova-2-sonic/sample-codes/console-python).
INTERRUPTED_MARKER = '{ "interrupted" : true }'
# additionalModelFields is a JSON *string*; these are the page's two spellings, verbatim.
_GENERATION_STAGE = {"FINAL": '{"generationStage":"FINAL"}', "SPECULATIVE": '{"generationStage":"SPECULATIVE"}'}
TEXT_STOPS = ("PARTIAL_TURN", "END_TURN", "INTERRUPTED")  # TextOutputContent / ContentEnd
AUDIO_STOPS = ("PARTIAL_TURN", "END_TURN")  # AudioOutputContent / ContentEnd


@dataclass(frozen=True, slots=True)
class Completion:
    """The identifiers every event of one completion carries."""

    session_id: str
    prompt_name: str
    completion_id: str

    def ids(self) -> dict[str, str]:
        return {"sessionId": self.session_id, "promptName": self.prompt_name, "completionId": self.completion_id}

    def content(self, content_id: str) -> dict[str, str]:
        return {**self.ids(), "contentId": content_id}


def _event(name: str, body: dict[str, Any]) -> Event:
    return {"event": {name: body}}


def usage_event(c: Completion, delta: dict[str, dict[str, int]], total: dict[str, dict[str, int]]) -> Event:
    """1. UsageEvent. ``delta``/``total``: {"input"|"output": {"speechTokens", "textTokens"}}."""
    def tokens(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        return {side: {"speechTokens": counts[side]["speechTokens"], "textTokens": counts[side]["textTokens"]}
                for side in ("input", "output")}

    total_in = total["input"]["speechTokens"] + total["input"]["textTokens"]
    total_out = total["output"]["speechTokens"] + total["output"]["textTokens"]
    return _event("usageEvent", {
        "completionId": c.completion_id, "details": {"delta": tokens(delta), "total": tokens(total)},
        "promptName": c.prompt_name, "sessionId": c.session_id,
        "totalInputTokens": total_in, "totalOutputTokens": total_out, "totalTokens": total_in + total_out,
    })


def completion_start(c: Completion) -> Event:
    """2. CompleteStartEvent."""
    return _event("completionStart", c.ids())


def text_content_start(c: Completion, content_id: str, role: TextRole, stage: Stage) -> Event:
    """3. TextOutputContent / ContentStart."""
    return _event("contentStart", {
        "additionalModelFields": _GENERATION_STAGE[stage], **c.content(content_id), "type": "TEXT", "role": role,
        "textOutputConfiguration": {"mediaType": "text/plain"},
    })


def text_output(c: Completion, content_id: str, role: TextRole, text: str) -> Event:
    """3. TextOutputContent / TextOutput, plus ``role``: the documented sample has none, but the official
    samples read ``textOutput['role']`` without a default (nova_sonic_tool_use.py in the repository above),
    so the service sends it."""
    return _event("textOutput", {**c.content(content_id), "content": text, "role": role})


def text_content_end(c: Completion, content_id: str, stop_reason: str) -> Event:
    """3. TextOutputContent / ContentEnd."""
    if stop_reason not in TEXT_STOPS:
        raise ValueError(f"a TEXT block does not end with {stop_reason!r}")
    return _event("contentEnd", {**c.content(content_id), "stopReason": stop_reason, "type": "TEXT"})


def tool_content_start(c: Completion, content_id: str) -> Event:
    """4. ToolUse / ContentStart."""
    return _event("contentStart", {**c.content(content_id), "type": "TOOL", "role": "TOOL",
                                   "toolUseOutputConfiguration": {"mediaType": "application/json"}})


def tool_use(c: Completion, content_id: str, tool_name: str, tool_use_id: str, content: str) -> Event:
    """4. ToolUse / ToolUse. ``content`` is the arguments as a JSON string (documented as ``"json"``)."""
    return _event("toolUse", {**c.content(content_id), "content": content, "toolName": tool_name,
                              "toolUseId": tool_use_id})


def tool_content_end(c: Completion, content_id: str) -> Event:
    """4. ToolUse / ContentEnd."""
    return _event("contentEnd", {**c.content(content_id), "stopReason": "TOOL_USE", "type": "TOOL"})


def audio_content_start(c: Completion, content_id: str, rate: int) -> Event:
    """5. AudioOutputContent / ContentStart."""
    if rate not in OUTPUT_RATES:
        raise ValueError(f"no output rate {rate}")
    return _event("contentStart", {
        **c.content(content_id), "type": "AUDIO", "role": "ASSISTANT",
        "audioOutputConfiguration": {"mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16,
                                     "encoding": "base64", "channelCount": 1},
    })


def audio_output(c: Completion, content_id: str, pcm: bytes) -> Event:
    """5. AudioOutputContent / AudioOutput."""
    return _event("audioOutput", {**c.content(content_id), "content": base64.b64encode(pcm).decode("ascii")})


def audio_content_end(c: Completion, content_id: str, stop_reason: str) -> Event:
    """5. AudioOutputContent / ContentEnd."""
    if stop_reason not in AUDIO_STOPS:
        raise ValueError(f"an AUDIO block does not end with {stop_reason!r}")
    return _event("contentEnd", {**c.content(content_id), "stopReason": stop_reason, "type": "AUDIO"})


def completion_end(c: Completion) -> Event:
    """6. CompletionEndEvent (END_TURN is the only documented stop reason)."""
    return _event("completionEnd", {**c.ids(), "stopReason": "END_TURN"})
