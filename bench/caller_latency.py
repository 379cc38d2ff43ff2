"""Reply time as the guest hears it: end of the caller's voiced speech -> first assistant sound at the caller.

    .venv/bin/python bench/caller_latency.py [--quick] [--transport ws|rtc|both] [--engine local|nova]
                                              [--sensitivity HIGH,MEDIUM,LOW] [--screen]

The figure every other latency figure is judged by (docs/latency.md). The runtime is served by uvicorn in
this process (its own thread and event loop, default wiring), and callers place real calls to it:

- **ws**: a WebSocket caller on ``/ws/audio`` (16 kHz PCM up, 24 kHz PCM down, as tools/smoke.py does);
- **rtc**: an aiortc caller (tools/probe.py ``CallProbe``) over a real peer connection, Opus both ways.

Each caller speaks booking dialogues in voices the engine was not tuned on (eSpeak NG English voices and
their +f/+m variants, hibari at several speeds), over a line with white noise at 15-25 dB SNR (the noise
runs for the whole call, between utterances too, as a real microphone's would), paced 20 ms frames on the
wall clock. Per turn it measures, on one monotonic clock:

- **end of speech**: the moment the last voiced sample of the clean clip was spoken (the frame carrying
  it leaves when it is complete, as from a microphone: packetisation is part of the figure);
- **first sound**: when the first non-silent assistant sample after that would play at the caller. For
  WebRTC that is the decoded frame's arrival (after the caller's jitter buffer: the runtime's own
  ``LowDelayAudioJitterBuffer``, which releases each packet as it arrives; ``--rtc-aiortc-jitter`` uses
  aiortc's default 80 ms prefetch one instead) plus the sample's place in the frame; for the WebSocket,
  whose server sends audio slightly ahead of real time, a player that plays chunks back to back.

A turn where the assistant was already sounding while the guest spoke is counted as "overlap" and left
out of the figures (its "first sound" would be the middle of another reply). After each reply the
caller sends ``{"type":"heard","latencyMs":...}`` (runtime/speech/ports.py), so /metrics'
``voice_caller_response_seconds`` gets the same figure.

The per-stage breakdown comes from the server's stamps (runtime/turn_trace.py), read from
``turn_trace.finished()`` after each call: for each stage, its first stamp in the turn's window, minus the
caller's end of speech. Against an older checkout without turn_trace (copy this file there to measure
"before") the stage breakdown prints "n/a"; a refused ``heard`` message is ignored.

``--engine nova`` runs the same against the Nova Sonic emulator (emulators/nova_sonic.py), once per
``endpointingSensitivity``, so the cost of each setting shows (docs/latency.md).

WebRTC needs a non-loopback address, and no traffic may go to this machine's interfaces, so the whole
run happens inside a private network namespace the bench creates (tests/netns.py; root and iproute2).
Without one, ``--transport ws`` still runs on the host's loopback. Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FRAME_SECONDS = 0.02
SOUND_PEAK = 300  # int16: an assistant sample at least this loud (-40 dBFS) is sound, below it silence
VOICED_BELOW_PEAK_DB = 40.0  # a caller's 10 ms block within this of the clip's loudest block is speech
QUIET_GAP = 0.3  # seconds without sound before a new sound counts as a new onset
REPLY_DONE_QUIET = 1.0  # the reply is over after this long without sound
BENCH_CIDR = "10.253.2.1/24"  # the namespace's one address (bench/rtc_sessions.py uses 10.253.0.1)
STAFF_TOKEN = "bench-caller-staff-token"

DIALOGUES = [
    ["hi there i would like to book a table for four people tomorrow at seven pm", "my name is alice smith",
     "yes please"],
    ["can i book a table for two on the twelfth at seven thirty", "it's emma wilson", "yes please"],
    ["hello i'd like to make a reservation", "next friday at half past eight", "three people"],
    ["book a table for six tomorrow at eight pm", "james brown", "yes"],
]

NAME_LINES = {"my name is alice smith", "it's emma wilson", "james brown"}

# eSpeak NG's own English voices (the mbrola ones need the mbrola binary and its databases, not installed)
# and the variants that change pitch and formants. Which of them the engine handles is measured with
# --screen (word error rate of the booking lines through the engine's recogniser); the result is kept here.
ESPEAK_ACCENTS = ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc"]
ESPEAK_VARIANTS = ["", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4"]
HIBARI_SPEEDS = [0.85, 1.1, 1.3]  # bench/engine.py tunes on hibari 1.0
SNRS_DB = [15.0, 20.0, 25.0]


# --- measurement (pure functions over samples; tests/foundation/test_caller_latency_bench.py) -------------

def voiced_span(pcm: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, end) seconds of the voiced part of a clean clip: 10 ms blocks within 40 dB of its loudest."""
    block = rate // 100
    x = pcm[: pcm.size // block * block].astype(np.float64).reshape(-1, block)
    rms = np.sqrt(np.mean(x**2, axis=1))
    if rms.size == 0 or rms.max() <= 0:
        return 0.0, 0.0
    voiced = np.nonzero(rms >= rms.max() * 10 ** (-VOICED_BELOW_PEAK_DB / 20))[0]
    return float(voiced[0] * block / rate), float((voiced[-1] + 1) * block / rate)


class Ear:
    """What the caller hears, on the wall clock: when each assistant sound starts, and the last sound.

    ``queued`` models a player that plays received chunks back to back (the WebSocket: the server sends
    audio a little ahead of real time, so a chunk may play after the one before it, not when it arrived);
    without it each chunk plays when it arrives (WebRTC: the caller's jitter buffer already paced it).
    """

    def __init__(self, *, queued: bool) -> None:
        self.queued = queued
        self.play_end = -math.inf
        self.spans: list[list[float]] = []  # [onset, last loud sample] of each sound, in play time

    def feed(self, arrival: float, samples: np.ndarray, rate: int) -> None:
        start = max(arrival, self.play_end) if self.queued else arrival
        self.play_end = start + samples.size / rate
        loud = np.nonzero(np.abs(samples.astype(np.int32)) >= SOUND_PEAK)[0]
        if loud.size:
            first, last = start + float(loud[0]) / rate, start + float(loud[-1]) / rate
            if not self.spans or first - self.spans[-1][1] > QUIET_GAP:
                self.spans.append([first, last])
            else:
                self.spans[-1][1] = last

    @property
    def onsets(self) -> list[float]:
        return [span[0] for span in self.spans]

    @property
    def last_sound(self) -> float:
        return self.spans[-1][1] if self.spans else -math.inf

    def onset_after(self, moment: float) -> float | None:
        return next((span[0] for span in self.spans if span[0] > moment), None)

    def sounded_between(self, start: float, end: float) -> bool:
        """Was the assistant sounding at any time in [start, end]?"""
        return any(onset <= end and last >= start for onset, last in self.spans)

    def quiet_for(self, now: float) -> float:
        return now - max(self.last_sound, self.play_end if self.queued else -math.inf)


@dataclass
class Utterance:
    """One line the caller speaks, and when (caller's monotonic clock) its voiced part was spoken."""

    text: str
    pcm: np.ndarray  # at the mic's rate
    voiced: tuple[float, float]  # seconds into pcm
    voiced_start_at: float | None = None
    voiced_end_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Mic:
    """A microphone timeline: 20 ms frames of the current utterance (or silence) plus the line's noise.

    ``frame(start)`` is called once per frame with the wall-clock time the frame's first sample was
    spoken; it notes when each utterance's voiced start and end were spoken.
    """

    def __init__(self, rate: int, noise_std: float = 0.0, seed: int = 5) -> None:
        self.rate = rate
        self.size = int(rate * FRAME_SECONDS)
        self.noise_std = noise_std
        self._rng = np.random.default_rng(seed)
        self._queue: deque[Utterance] = deque()
        self._pos = 0

    def say(self, utterance: Utterance) -> None:
        self._queue.append(utterance)

    def frame(self, start: float) -> np.ndarray:
        out = np.zeros(self.size, np.float32)
        filled = 0
        while filled < self.size and self._queue:
            utt = self._queue[0]
            take = min(self.size - filled, utt.pcm.size - self._pos)
            out[filled : filled + take] = utt.pcm[self._pos : self._pos + take]
            for attr, offset in (("voiced_start_at", utt.voiced[0]), ("voiced_end_at", utt.voiced[1])):
                sample = round(offset * self.rate)
                if getattr(utt, attr) is None and self._pos <= sample <= self._pos + take:
                    setattr(utt, attr, start + (filled + sample - self._pos) / self.rate)
            self._pos += take
            filled += take
            if self._pos >= utt.pcm.size:
                self._queue.popleft()
                self._pos = 0
                utt.done.set()
        if self.noise_std > 0:
            out += self._rng.normal(0.0, self.noise_std, self.size).astype(np.float32)
        return np.clip(out, -32768, 32767).astype("<i2")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- voices -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Voice:
    name: str
    make: Callable[[str], bytes]  # text -> 16 kHz s16le
    snr_db: float


def all_voices() -> list[Voice]:
    from tests.engine.voices import espeak_voice, hibari_voice

    voices: list[Voice] = []
    names = [(f"espeak {a}{v}", a + v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    excluded = set(EXCLUDED_ESPEAK)
    for i, (name, voice) in enumerate(n for n in names if n[1] not in excluded):
        voices.append(Voice(name, lambda t, v=voice: espeak_voice(t, v, 160), SNRS_DB[i % len(SNRS_DB)]))
    for i, speed in enumerate(HIBARI_SPEEDS):
        voices.append(Voice(f"hibari x{speed}", lambda t, s=speed: hibari_voice(t, s), SNRS_DB[i % len(SNRS_DB)]))
    return voices


# From `--screen` (word error rate of the dialogue lines, the engine's recogniser, 20 dB SNR; 2026-12-02, 44 of
# 72 voices kept): above 40 % the engine does not "handle" a voice - the dialogue cannot go on, and its turns
# would measure re-prompts. Re-run the screen when the recogniser changes. Two accents go entirely (West
# Midlands, Caribbean), Scotland keeps two variants.
EXCLUDED_ESPEAK: dict[str, str] = {
    "en-us+f3": "WER 44.1%",
    "en-gb-scotland+f1": "WER 79.4%",
    "en-gb-scotland+f3": "WER 70.6%",
    "en-gb-scotland+f4": "WER 79.4%",
    "en-gb-scotland+m1": "WER 48.5%",
    "en-gb-scotland+m2": "WER 47.1%",
    "en-gb-scotland+m4": "WER 51.5%",
    "en-gb-x-gbclan": "WER 47.1%",
    "en-gb-x-gbclan+f1": "WER 44.1%",
    "en-gb-x-gbcwmd": "WER 66.2%",
    "en-gb-x-gbcwmd+f1": "WER 73.5%",
    "en-gb-x-gbcwmd+f2": "WER 54.4%",
    "en-gb-x-gbcwmd+f3": "WER 76.5%",
    "en-gb-x-gbcwmd+f4": "WER 80.9%",
    "en-gb-x-gbcwmd+m1": "WER 70.6%",
    "en-gb-x-gbcwmd+m2": "WER 77.9%",
    "en-gb-x-gbcwmd+m3": "WER 61.8%",
    "en-gb-x-gbcwmd+m4": "WER 75.0%",
    "en-029": "WER 54.4%",
    "en-029+f1": "WER 55.9%",
    "en-029+f2": "WER 57.4%",
    "en-029+f3": "WER 80.9%",
    "en-029+f4": "WER 58.8%",
    "en-029+m1": "WER 57.4%",
    "en-029+m2": "WER 58.8%",
    "en-029+m3": "WER 55.9%",
    "en-029+m4": "WER 50.0%",
    "en-us-nyc+f4": "WER 42.6%",
}


def default_voices(voices: list[Voice]) -> list[Voice]:
    """Every accent once (each with another variant) and every hibari speed: about 6 minutes per run."""
    chosen: list[Voice] = []
    for i, accent in enumerate(ESPEAK_ACCENTS):
        n = len(ESPEAK_VARIANTS)
        names = [f"espeak {accent}{ESPEAK_VARIANTS[(i + k) % n]}" for k in range(n)]
        found = next((v for name in names for v in voices if v.name == name), None)
        if found is not None:
            chosen.append(found)
    return chosen + [v for v in voices if v.name.startswith("hibari")]


def screen(threshold: float = 0.4) -> None:
    """Word error rate of the dialogue lines per eSpeak voice through the engine's own recogniser, 20 dB SNR."""
    from runtime.engine.asr import StreamingRecognizer, Utterance
    from runtime.engine.lm.build import build_assets
    from tests.engine.voices import espeak_voice, noise_level_for, word_errors

    assets = build_assets(Path(tempfile.mkdtemp(prefix="bench-screen-")))
    lines = [line for dialogue in DIALOGUES for line in dialogue]
    for accent in ESPEAK_ACCENTS:
        for variant in ESPEAK_VARIANTS:
            voice = accent + variant
            rec = StreamingRecognizer(assets)
            rng = np.random.default_rng(5)
            level = noise_level_for(espeak_voice(lines[0], voice, 160), 20.0)
            errors = words = 0
            for line in lines:
                rec.search = "name" if line in NAME_LINES else "domain"  # as the dialogue asks for a name
                pcm = bytes(9600) + espeak_voice(line, voice, 160) + bytes(19200)
                x = np.frombuffer(pcm, "<i2").astype(np.float32) + rng.normal(0, level, len(pcm) // 2)
                heard = " ".join(e.text for e in rec.feed(np.clip(x, -32768, 32767).astype("<i2").tobytes())
                                 if isinstance(e, Utterance))
                e, n = word_errors(line, heard)
                errors, words = errors + e, words + n
            verdict = "EXCLUDE" if errors / words > threshold else "ok"
            print(f"  {voice:22} WER {errors / words:6.1%}  {verdict}", flush=True)


def quick_voices(voices: list[Voice]) -> list[Voice]:
    wanted = ["espeak en-gb-x-rp+f2", "hibari x1.1"]
    chosen = [v for v in voices if v.name in wanted]
    return chosen or voices[:2]


# --- the server -------------------------------------------------------------------------------------------

class Server:
    """The runtime under uvicorn on its own thread and event loop, in this process (one monotonic clock)."""

    def __init__(self, **settings: Any) -> None:
        import uvicorn

        from runtime.app import create_app
        from runtime.settings import load_settings

        data = Path(tempfile.mkdtemp(prefix="bench-caller-"))
        app = create_app(load_settings(data_dir=data, staff_token=STAFF_TOKEN, session_secret="c" * 40,
                                       max_calls_per_client=1000, **settings))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       name="bench-runtime", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the runtime did not start")
            time.sleep(0.05)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


# --- calls ------------------------------------------------------------------------------------------------

@dataclass
class Turn:
    transport: str
    voice: str
    snr_db: float
    text: str
    voiced_start_at: float
    end_of_speech: float
    first_sound: float | None
    overlap: bool
    heard_sent: bool = False
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after end_of_speech

    @property
    def latency(self) -> float | None:
        if self.first_sound is None or self.overlap:
            return None
        return self.first_sound - self.end_of_speech


class Line(Protocol):
    """What a dialogue needs from a transport: a mic, an ear, a way to send a control message."""

    mic: Mic
    ear: Ear
    rate: int  # the mic's sample rate

    def send(self, message: dict[str, Any]) -> None: ...


class WsLine:
    def __init__(self, url: str, noise_std: float) -> None:
        self.url = url
        self.rate = 16_000
        self.mic = Mic(self.rate, noise_std)
        self.ear = Ear(queued=True)
        self.messages: list[dict[str, Any]] = []
        self._ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: asyncio.Queue[str] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def call(self) -> Any:
        from websockets.asyncio.client import connect

        async with connect(f"{self.url}/ws/audio", max_size=2**22) as ws:
            self._ws = ws
            self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
            try:
                yield self
            finally:
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "hangup"}))
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def send(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(message))

    async def _send(self) -> None:
        started = time.monotonic()
        i = 0
        while True:
            due = started + (i + 1) * FRAME_SECONDS
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._ws.send(self.mic.frame(due - FRAME_SECONDS).tobytes())
            while not self._outbox.empty():
                await self._ws.send(self._outbox.get_nowait())
            i += 1

    async def _receive(self) -> None:
        async for frame in self._ws:
            now = time.monotonic()
            if isinstance(frame, bytes):
                self.ear.feed(now, np.frombuffer(frame, "<i2"), 24_000)
            else:
                with contextlib.suppress(ValueError):
                    self.messages.append(json.loads(frame))


class RtcLine:
    def __init__(self, url: str, noise_std: float, *, aiortc_jitter: bool) -> None:
        self.url = url
        self.rate = 48_000
        self.mic = Mic(self.rate, noise_std)
        self.ear = Ear(queued=False)
        self.aiortc_jitter = aiortc_jitter
        self.probe: Any = None

    @contextlib.asynccontextmanager
    async def call(self) -> Any:
        import httpx

        from tools.probe import CallProbe

        self.probe = CallProbe(track=_mic_track(self.mic), low_delay_receive=not self.aiortc_jitter)
        self.probe.on_frame = lambda mono, rate, _now: self.ear.feed(time.monotonic(), mono, rate)
        try:
            offer = await self.probe.offer()
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
                response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            response.raise_for_status()
            await self.probe.accept(response.json()["sdp"])
            await self.probe.wait_connected()
            yield self
        finally:
            with contextlib.suppress(Exception):
                self.probe.send({"type": "hangup"})
                await asyncio.sleep(0.2)
            await self.probe.close()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.probe.messages if self.probe is not None else []

    def send(self, message: dict[str, Any]) -> None:
        self.probe.send(message)


def _mic_track(mic: Mic) -> Any:
    """An aiortc audio track that plays ``mic`` on the wall clock, 20 ms per ``recv``."""
    from aiortc.mediastreams import MediaStreamTrack
    from av import AudioFrame

    class MicTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._started: float | None = None
            self._index = 0

        async def recv(self) -> AudioFrame:
            if self._started is None:
                self._started = time.monotonic()
            due = self._started + (self._index + 1) * FRAME_SECONDS
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            samples = mic.frame(due - FRAME_SECONDS)
            frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = mic.rate
            frame.pts = self._index * mic.size
            frame.time_base = fractions.Fraction(1, mic.rate)
            self._index += 1
            return frame

    return MicTrack()


async def wait_until(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def wait_reply_over(ear: Ear, within: float = 25.0) -> None:
    await wait_until(lambda: ear.quiet_for(time.monotonic()) >= REPLY_DONE_QUIET, within)


async def run_dialogue(line: Line, voice: Voice, lines: list[str], transport: str) -> list[Turn]:
    """Greeting, then each line: speak, wait for the reply's first sound and its end, report what was heard."""
    import soxr

    turns: list[Turn] = []
    # the greeting: wait for it to start and to finish (or for 4 s of nothing) before speaking
    if await wait_until(lambda: bool(line.ear.onsets), 8.0):
        await wait_reply_over(line.ear)
    for text in lines:
        clean16 = np.frombuffer(voice.make(text), "<i2")
        pcm = soxr.resample(clean16.astype(np.float32), 16_000, line.rate) if line.rate != 16_000 else clean16
        pcm = np.asarray(pcm, np.float32)
        utt = Utterance(text, pcm, voiced_span(clean16, 16_000))
        line.mic.say(utt)
        await utt.done.wait()
        assert utt.voiced_start_at is not None
        assert utt.voiced_end_at is not None
        end = utt.voiced_end_at
        await wait_until(lambda e=end: line.ear.onset_after(e) is not None, 15.0)
        first = line.ear.onset_after(end)
        overlap = line.ear.sounded_between(utt.voiced_start_at, end)
        turn = Turn(transport, voice.name, voice.snr_db, text, utt.voiced_start_at, end, first, overlap)
        if first is not None:
            await wait_reply_over(line.ear)
            if turn.latency is not None:
                line.send({"type": "heard", "latencyMs": round(turn.latency * 1000, 1)})
                turn.heard_sent = True
        turns.append(turn)
        await asyncio.sleep(0.3)
    return turns


# --- stages -----------------------------------------------------------------------------------------------

def _turn_trace() -> Any:
    try:
        from runtime import turn_trace
    except ImportError:  # an older checkout: caller-side figures only
        return None
    return turn_trace


def attach_stages(turns: list[Turn], traces: list[Any]) -> None:
    """Per turn, each stage's first stamp in [end of speech - 0.5 s, next turn's voiced start)."""
    marks = sorted((at, stage) for trace in traces for stage, at in trace.marks)
    for i, turn in enumerate(turns):
        until = turns[i + 1].voiced_start_at if i + 1 < len(turns) else math.inf
        for at, stage in marks:
            if turn.end_of_speech - 0.5 <= at < until and stage not in turn.stages:
                turn.stages[stage] = at - turn.end_of_speech


# --- the run ----------------------------------------------------------------------------------------------

def noise_std_for(voice: Voice) -> float:
    from tests.engine.voices import noise_level_for

    return noise_level_for(voice.make(DIALOGUES[0][0]), voice.snr_db)


async def run_transport(transport: str, server: Server, voices: list[Voice], lines_per_call: int,
                        aiortc_jitter: bool) -> list[Turn]:
    trace_mod = _turn_trace()
    turns: list[Turn] = []
    for index, voice in enumerate(voices):
        dialogue = DIALOGUES[index % len(DIALOGUES)][:lines_per_call]
        seen = {id(t) for t in trace_mod.finished()} if trace_mod else set()
        noise_std = noise_std_for(voice)
        line: WsLine | RtcLine
        if transport == "ws":
            line = WsLine(server.http.replace("http://", "ws://"), noise_std)
        else:
            line = RtcLine(server.http, noise_std, aiortc_jitter=aiortc_jitter)
        try:
            async with line.call():
                call_turns = await run_dialogue(line, voice, dialogue, transport)
        except Exception as exc:  # a failed call is a finding; the run goes on
            print(f"  {transport} {voice.name}: call failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        if trace_mod is not None:
            await asyncio.sleep(0.5)  # the session ends (and files its trace) after the hang-up
            name = {"ws": "websocket", "rtc": "webrtc"}[transport]  # the session's own transport names
            new = [t for t in trace_mod.finished() if id(t) not in seen and t.transport == name]
            attach_stages(call_turns, new)
        refused = [m for m in line.messages if m.get("type") == "error"]
        for turn in call_turns:
            shown = f"{turn.latency * 1000:6.0f} ms" if turn.latency is not None else (
                "overlap" if turn.overlap else "no reply")
            print(f"  {transport:3} {voice.name:26} {voice.snr_db:4.0f} dB  {shown:>9}  {turn.text}", flush=True)
        if refused:
            print(f"    (server errors: {sorted({str(m.get('code')) for m in refused})})", flush=True)
        turns += call_turns
    return turns


STAGE_ORDER = ["speech_end", "endpoint", "asr_final", "decision", "tool_result", "tts_first_chunk",
               "first_audio_out", "first_packet_sent"]


def report(turns: list[Turn], engine: str, label: str = "", counted_before: dict[str, float] | None = None) -> None:
    print()
    print(f"{'transport':10} | {'engine':16} | {'n':>3} | {'p50':>7} | {'p95':>7} | {'worst':>7} | overlap | no reply")
    print("-" * 86)
    for transport in ("ws", "rtc"):
        mine = [t for t in turns if t.transport == transport]
        if not mine:
            continue
        values = [t.latency * 1000 for t in mine if t.latency is not None]
        name = f"{engine}{label}"
        if values:
            print(f"{transport:10} | {name:16} | {len(values):3} | {statistics.median(values):7.0f} | "
                  f"{percentile(values, 0.95):7.0f} | {max(values):7.0f} | {sum(t.overlap for t in mine):7} | "
                  f"{sum(t.first_sound is None for t in mine):8}")
        else:
            print(f"{transport:10} | {name:16} |   0 |     n/a |     n/a |     n/a |")
    print()
    print("stage breakdown: median ms after the caller's end of speech (server stamps, runtime/turn_trace.py)")
    for transport in ("ws", "rtc"):
        mine = [t for t in turns if t.transport == transport and t.latency is not None]
        if not mine:
            continue
        if not any(t.stages for t in mine):
            print(f"  {transport}: n/a (no runtime.turn_trace in this checkout)")
            continue
        cells = []
        for stage in STAGE_ORDER:
            values = [t.stages[stage] * 1000 for t in mine if stage in t.stages]
            cells.append(f"{stage} {statistics.median(values):.0f} (n={len(values)})" if values else f"{stage} -")
        heard = [(t.latency - t.stages["first_packet_sent"]) * 1000 for t in mine
                 if t.latency is not None and "first_packet_sent" in t.stages]
        if heard:
            cells.append(f"packet->ear {statistics.median(heard):.0f}")
        cells.append(f"heard {statistics.median([t.latency * 1000 for t in mine if t.latency is not None]):.0f}")
        print(f"  {transport}: " + " | ".join(cells))
    print()
    by_voice: dict[str, list[float]] = {}
    for t in turns:
        if t.latency is not None:
            by_voice.setdefault(f"{t.transport} {t.voice} ({t.snr_db:.0f} dB)", []).append(t.latency * 1000)
    counted = heard_counted()
    if counted is not None:  # this run's reports only (one registry for the whole process)
        counted = {k: v - (counted_before or {}).get(k, 0.0) for k, v in counted.items()
                   if v - (counted_before or {}).get(k, 0.0) > 0}
    sent = sum(t.heard_sent for t in turns)
    print(f"heard reports: {sent} sent; voice_caller_response_seconds counted {counted}" if counted is not None
          else f"heard reports: {sent} sent; this checkout has no voice_caller_response_seconds")
    print("per voice: median ms (n)")
    for name, values in sorted(by_voice.items()):
        print(f"  {name:44} {statistics.median(values):6.0f} ({len(values)})")


def heard_counted() -> dict[str, float] | None:
    """The runtime's caller-side histogram counts per transport (same process: the default registry)."""
    from prometheus_client import REGISTRY

    counts: dict[str, float] = {}
    found = False
    for family in REGISTRY.collect():
        if family.name == "voice_caller_response_seconds":
            found = True
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    key = f"{sample.labels.get('transport')}/{sample.labels.get('engine')}"
                    counts[key] = counts.get(key, 0) + sample.value
    return counts if found else None


@contextlib.contextmanager
def namespace_if_possible(need: bool) -> Iterator[bool]:
    from tests import netns

    reason = netns.unavailable_reason()
    if reason is not None:
        if need:
            sys.exit(f"WebRTC needs a private network namespace: {reason}")
        yield False
        return
    try:
        with netns.network_namespace("nccaller", BENCH_CIDR, default_route=False):
            yield True
    except OSError as exc:
        sys.exit(f"cannot create a network namespace: {netns.failure_detail(exc)}")


async def bench(args: argparse.Namespace) -> None:
    voices = all_voices()
    if args.quick:
        voices, lines_per_call = quick_voices(voices), 3
    else:
        voices, lines_per_call = default_voices(voices), 2
    if args.voices:
        voices = [v for v in all_voices() if any(w in v.name for w in args.voices.split(","))]
    transports = ["ws", "rtc"] if args.transport == "both" else [args.transport]
    print(f"voices: {', '.join(f'{v.name} @ {v.snr_db:.0f} dB SNR' for v in voices)}")
    if EXCLUDED_ESPEAK:
        print(f"excluded: {', '.join(f'{k} ({v})' for k, v in EXCLUDED_ESPEAK.items())}")
    print("rtc caller jitter buffer:", "aiortc default (80 ms prefetch)" if args.rtc_aiortc_jitter
          else "the runtime's LowDelayAudioJitterBuffer (release on arrival)")
    if args.engine == "nova":
        sensitivities = args.sensitivity.split(",")
        for sensitivity in sensitivities:
            with nova_server(sensitivity) as server:
                before = heard_counted()
                print(f"\n== nova sonic emulator, endpointingSensitivity={sensitivity}", flush=True)
                turns: list[Turn] = []
                for transport in transports:
                    turns += await run_transport(transport, server, voices, lines_per_call, args.rtc_aiortc_jitter)
                report(turns, "nova", f" {sensitivity}", before)
        return
    server = Server()
    try:
        turns = []
        for transport in transports:
            turns += await run_transport(transport, server, voices, lines_per_call, args.rtc_aiortc_jitter)
    finally:
        server.stop()
    report(turns, "local")


# The emulator tells speech from quiet by frame energy (the service has its own detector); at 15 dB SNR the
# line's noise alone would be "speech" at its default threshold (300), so the bench raises it above the noise.
NOVA_SPEECH_RMS = 1000.0


@contextlib.contextmanager
def nova_server(sensitivity: str) -> Iterator[Server]:
    """The runtime on Nova Sonic, pointed at the emulator (its own thread) with keys the emulator issued.

    The emulator waits the documented end-of-turn pause for ``sensitivity`` after the caller's last voiced
    frame, then answers each turn with a spoken line (a tone with its transcript): what this measures is
    what the setting costs on top of the transport, not a model's thinking time.
    """
    from emulators.identity import CredentialBook
    from emulators.nova_sonic import NovaSonicEmulator, Say, Script, Turn, make_test_certificates

    certs = make_test_certificates(tempfile.mkdtemp(prefix="bench-nova-tls-"))
    book = CredentialBook()
    keys = book.issue(lifetime_seconds=None, temporary=False)
    script = Script([Turn("(the greeting prompt)", Say("Hello, thanks for calling. How can I help you today?", 1500))],
                    fallback=Say("Of course. What day and time would you like, and for how many people?", 1500))
    emulator = NovaSonicEmulator(script, credentials=book, speech_rms=NOVA_SPEECH_RMS)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        box["stop"] = asyncio.Event()
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            box["url"] = url
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), name="bench-nova", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the Nova Sonic emulator did not start")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "NOVA_SONIC_CA_BUNDLE",
                                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    os.environ.update(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=box["url"], NOVA_SONIC_CA_BUNDLE=certs.ca_file,
                      AWS_ACCESS_KEY_ID=keys.access_key_id, AWS_SECRET_ACCESS_KEY=keys.secret_access_key)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    server = Server(speech_engine="nova-sonic", endpointing_sensitivity=sensitivity)
    try:
        yield server
    finally:
        server.stop()
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two voices, one three-line call per transport")
    parser.add_argument("--transport", choices=["ws", "rtc", "both"], default="both")
    parser.add_argument("--engine", choices=["local", "nova"], default="local")
    parser.add_argument("--sensitivity", default="HIGH,MEDIUM,LOW", help="--engine nova: which settings to run")
    parser.add_argument("--voices", default="", help="only voices whose name contains one of these (comma list)")
    parser.add_argument("--screen", action="store_true",
                        help="only print each eSpeak voice's word error rate through the engine's recogniser")
    parser.add_argument("--rtc-aiortc-jitter", action="store_true",
                        help="the rtc caller uses aiortc's default jitter buffer instead of the low-delay one")
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME_LOG_LEVEL", "WARNING")
    if args.screen:
        screen()
        return
    with namespace_if_possible(args.transport != "ws") as inside:
        if not inside:
            print("(no network namespace: WebSocket on the host's loopback)")
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
