"""A scripted caller that talks to any ``SpeechModel`` stream over the Nova Sonic event protocol.

Tests and ``bench/engine.py`` use it to hold whole spoken conversations with the offline engine: it sends
the input events a session core sends (session/prompt start, system prompt, a continuous audio content
block, TOOL result blocks), runs the model's tool calls through a handler, and groups output events into
assistant turns. It behaves like a live client in one important way: it keeps streaming audio (silence
while the assistant's reply would be playing), which is how the engine tells barge-in from a new turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.speech import protocol
from runtime.speech.model import SpeechModelError, SpeechStream

ToolHandler = Callable[[str, str, str], Awaitable[dict[str, Any]]]
"""(tool name, toolUseId, JSON arguments) -> result object sent back as the toolResult."""

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000


@dataclass
class AssistantTurn:
    """One completion: what the caller heard and saw."""

    user_text: str | None = None
    text: str = ""  # the FINAL assistant transcript
    speculative: str = ""
    audio: bytearray = field(default_factory=bytearray)  # 24 kHz s16le
    tool_uses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: str = ""
    first_audio_at: float | None = None  # time.monotonic() of the first audioOutput
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / 2 / OUTPUT_RATE


class ScriptedCaller:
    def __init__(self, stream: SpeechStream, tools: ToolHandler | None = None, *, chunk_ms: int = 32,
                 chunk_bytes: int | None = None) -> None:
        self.noise_level = 0.0  # std of white noise added to everything sent (a noisy line), int16 units
        self._rng = np.random.default_rng(11)
        self.stream = stream
        self._tools = tools
        self._chunk = chunk_bytes or INPUT_RATE * chunk_ms // 1000 * 2
        self.prompt = f"prompt-{uuid.uuid4()}"
        self._audio_name = f"audio-{uuid.uuid4()}"
        self.turns: asyncio.Queue[AssistantTurn] = asyncio.Queue()
        self.interruptions = 0  # barge-in markers seen, in or out of a completion
        self.all_events: list[dict[str, Any]] = []
        self.error: SpeechModelError | None = None
        self._current: AssistantTurn | None = None
        self._content_kind: dict[str, tuple[str, str, str | None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    async def start(self, *, system_prompt: str = "You are a restaurant booking assistant.",
                    tool_specs: list[dict[str, Any]] | None = None, output_rate: int = OUTPUT_RATE,
                    history: tuple[tuple[str, str], ...] = ()) -> None:
        self._reader = asyncio.create_task(self._read())
        await self.stream.send(protocol.session_start())
        await self.stream.send(protocol.prompt_start(self.prompt, voice_id="matthew", tools=tool_specs,
                                                     output_rate=output_rate))
        name = f"system-{uuid.uuid4()}"
        await self.stream.send(protocol.text_content_start(self.prompt, name, "SYSTEM"))
        await self.stream.send(protocol.text_input(self.prompt, name, system_prompt))
        await self.stream.send(protocol.content_end(self.prompt, name))
        for role, text in history:  # a renewed stream replays the conversation so far
            name = f"history-{uuid.uuid4()}"
            await self.stream.send(protocol.text_content_start(self.prompt, name, role))  # type: ignore[arg-type]
            await self.stream.send(protocol.text_input(self.prompt, name, text))
            await self.stream.send(protocol.content_end(self.prompt, name))
        await self.stream.send(protocol.audio_content_start(self.prompt, self._audio_name))

    async def send_audio(self, pcm: bytes, *, realtime: bool = False) -> None:
        """Stream 16 kHz s16le in ``chunk_ms`` pieces; ``realtime`` paces them like a microphone."""
        if self.noise_level > 0:
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
            samples += self._rng.normal(0.0, self.noise_level, samples.size).astype(np.float32)
            pcm = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
        started = time.monotonic()
        for i, off in enumerate(range(0, len(pcm), self._chunk)):
            await self.stream.send(protocol.audio_input(self.prompt, self._audio_name, pcm[off : off + self._chunk]))
            if realtime:
                due = started + (i + 1) * self._chunk / 2 / INPUT_RATE
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            elif i % 16 == 15:
                await asyncio.sleep(0)  # let the engine consume as we go

    async def send_silence(self, seconds: float, *, realtime: bool = False) -> None:
        await self.send_audio(bytes(int(seconds * INPUT_RATE) * 2), realtime=realtime)

    async def listen_out(self, turn: AssistantTurn, *, realtime: bool = False) -> None:
        """Keep the line open (silence) while ``turn``'s audio plays, as a live caller's microphone would."""
        await self.send_silence(turn.audio_seconds + 0.2, realtime=realtime)

    async def say(self, pcm: bytes, *, trailing_silence: float = 0.8, realtime: bool = False) -> float:
        """Speak an utterance followed by silence; returns monotonic time when the speech ended."""
        await self.send_silence(0.3, realtime=realtime)
        await self.send_audio(pcm, realtime=realtime)
        ended = time.monotonic()
        await self.send_silence(trailing_silence, realtime=realtime)
        return ended

    async def type_text(self, text: str) -> None:
        name = f"text-{uuid.uuid4()}"
        await self.stream.send(protocol.text_content_start(self.prompt, name, "USER", interactive=True))
        await self.stream.send(protocol.text_input(self.prompt, name, text))
        await self.stream.send(protocol.content_end(self.prompt, name))

    async def next_turn(self, wait: float = 30.0) -> AssistantTurn:
        return await asyncio.wait_for(self.turns.get(), wait)

    async def end_audio(self) -> None:
        """Close the audio content block (the microphone goes away) but keep the stream open."""
        await self.stream.send(protocol.content_end(self.prompt, self._audio_name))

    async def hang_up(self, *, abrupt: bool = False) -> None:
        """Close the audio block, prompt and session in Nova's order (or just close, if ``abrupt``)."""
        if not abrupt:
            with contextlib.suppress(SpeechModelError):
                await self.stream.send(protocol.content_end(self.prompt, self._audio_name))
                await self.stream.send(protocol.prompt_end(self.prompt))
                await self.stream.send(protocol.session_end())
        await self.stream.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        for task in list(self._tool_tasks):
            task.cancel()

    # ------------------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                event = await self.stream.receive()
                if event is None:
                    break
                self.all_events.append(event)
                self._on_event(event)
        except SpeechModelError as exc:
            self.error = exc
        finally:
            self.closed.set()

    def _turn(self) -> AssistantTurn:
        if self._current is None:
            self._current = AssistantTurn()
        return self._current

    def _on_event(self, event: dict[str, Any]) -> None:
        ((name, body),) = event["event"].items()
        turn = self._turn()
        turn.events.append(event)
        if name == "contentStart":
            stage = protocol.generation_stage(body)
            self._content_kind[body.get("contentId", "")] = (body.get("type", ""), body.get("role", ""), stage)
        elif name == "textOutput":
            kind = self._content_kind.get(body.get("contentId", ""), ("TEXT", body.get("role", ""), None))
            text = str(body.get("content", ""))
            if protocol.is_interruption_text(text):
                self.interruptions += 1
                turn.interrupted = True
            elif kind[1] == "USER":
                turn.user_text = text
            elif kind[2] == "SPECULATIVE":
                turn.speculative += text
            else:
                turn.text = (turn.text + " " + text).strip()
        elif name == "audioOutput":
            if turn.first_audio_at is None:
                turn.first_audio_at = time.monotonic()
            turn.audio += base64.b64decode(body.get("content", ""))
        elif name == "toolUse":
            args = json.loads(body.get("content") or "{}")
            turn.tool_uses.append((str(body.get("toolName")), args))
            if self._tools is not None:
                task = asyncio.create_task(self._run_tool(turn, str(body.get("toolName")), str(body.get("toolUseId")),
                                                          str(body.get("content") or "{}")))
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
        elif name == "completionEnd":
            turn.stop_reason = str(body.get("stopReason", ""))
            self._current = None
            self.turns.put_nowait(turn)

    async def _run_tool(self, turn: AssistantTurn, name: str, tool_use_id: str, content: str) -> None:
        assert self._tools is not None
        result = await self._tools(name, tool_use_id, content)
        turn.tool_results.append(result)
        block = f"tool-{uuid.uuid4()}"
        with contextlib.suppress(SpeechModelError):
            await self.stream.send(protocol.tool_content_start(self.prompt, block, tool_use_id))
            await self.stream.send(protocol.tool_result(self.prompt, block, result))
            await self.stream.send(protocol.content_end(self.prompt, block))
