"""Offline engine benchmark: response latency, ASR/TTS real-time factors, word error rates.

Run from the repo root: ``.venv/bin/python bench/engine.py [--quick] [--snr DB] [--concurrent N]``. Prints
figures, never asserts. ``--quick`` (about a minute): two dialogues on a hibari and an eSpeak voice, the
latency table with its per-stage breakdown and the TTS figures only.

- Latency: end of the caller's speech -> first assistant audio byte, per turn, over spoken booking
  dialogues streamed in real time (20 ms pacing, like a microphone). Baseline in the same run: the
  endpointing delay alone (how long the recogniser needs to decide the caller stopped), so the ratio shows
  what decoding + dialogue + tool call + TTS add on top of turn detection. Per stage (the engine's own
  stamps, runtime/turn_trace.py): median time after the end of speech at which it happened.
- ASR RTF: the per-stream domain recogniser over all utterances, against the generic CMU LM decoding the
  same audio (the fallback path) as baseline; plus per-20 ms-frame cost.
- TTS RTF: hibari on the assistant's replies, against the espeak-ng binary on the same text.
- WER of the booking utterances per caller voice (hibari speeds, eSpeak voices incl. the male ones that
  pocketsphinx handles badly), clean and with white noise at 20 dB SNR.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from runtime import turn_trace
from runtime.bookings.service import BookingService
from runtime.engine import OfflineEngine
from runtime.engine.asr import GenericRecognizer, StreamingRecognizer, Utterance
from runtime.engine.lm.build import build_assets
from runtime.engine.tts import Synthesizer
from runtime.settings import load_settings
from runtime.speech.model import StreamOptions
from runtime.speech.tools import ToolRunner, tool_specs
from runtime.stores.sqlite import SQLiteStore
from tests.engine.voices import espeak_voice, hibari_voice, noise_level_for, word_errors
from tools.engine_caller import ScriptedCaller

DIALOGUES = [
    ["i would like to book a table for four people tomorrow at seven pm", "my name is alice smith", "yes please"],
    ["hello i'd like to make a reservation", "next friday", "half past eight", "three people", "my name is bob jones",
     "actually make it five people", "yes"],
    ["can i book a table for two on the twelfth at seven thirty", "it's emma wilson", "say that again", "yes please"],
    ["what's the weather like in paris", "book a table for six tomorrow at eight pm", "james brown", "yes"],
]
OUT_OF_DOMAIN = {"what's the weather like in paris"}  # answered via the generic-LM fallback, not scored here
SEARCH_FOR = {"my name is alice smith": "name", "my name is bob jones": "name", "it's emma wilson": "name",
              "james brown": "name"}
VOICES = {
    "hibari-1.0": lambda t: hibari_voice(t, 1.0),
    "hibari-0.85": lambda t: hibari_voice(t, 0.85),
    "hibari-1.2": lambda t: hibari_voice(t, 1.2),
    "espeak-en-us+f2-150": lambda t: espeak_voice(t, "en-us+f2", 150),
    "espeak-en-us+f3-160": lambda t: espeak_voice(t, "en-us+f3", 160),
    "espeak-en-us-160": lambda t: espeak_voice(t, "en-us", 160),
    "espeak-en-us+m3-160": lambda t: espeak_voice(t, "en-us+m3", 160),
}


def trailing_quiet(pcm: bytes) -> float:
    """Seconds of near-silence at the end of a clip (TTS pads its output): the true end of speech is earlier."""
    x = np.abs(np.frombuffer(pcm, "<i2").astype(np.float32))
    frames = x[: len(x) // 320 * 320].reshape(-1, 320).max(axis=1)
    active = np.nonzero(frames > 0.01 * frames.max())[0]  # -40 dB below the peak
    return (len(frames) - 1 - int(active[-1])) * 0.02 if active.size else 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


STAGES: dict[str, list[float]] = {}  # stage -> seconds after the end of speech, over all turns
AUDIBLE: list[float] = []  # end of speech -> first audible assistant sample (first byte + silence ahead of it)


def leading_silence(pcm: bytes | bytearray, rate: int = 24_000) -> float:
    x = np.abs(np.frombuffer(bytes(pcm), "<i2"))
    loud = np.nonzero(x > 100)[0]  # -50 dBFS
    return float(loud[0]) / rate if loud.size else 0.0


async def latency_run(settings_dir: Path, voices: list[str], concurrent: int, dialogues: list[list[str]],
                      snr_db: float | None = None) -> tuple[list[float], list[float]]:
    """Spoken dialogues in real time; returns (end-of-speech -> first audio, end-of-speech -> endpoint)."""
    settings = load_settings(data_dir=settings_dir, sqlite_path=Path(tempfile.mkdtemp()) / "bench.db")
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    bookings = BookingService(store.bookings, settings)
    engine = OfflineEngine(settings)
    await engine.warm_up()
    latencies: list[float] = []
    slowest: list[tuple[float, str]] = []

    async def one(voice_name: str, lines: list[str], index: int) -> None:
        runner = ToolRunner(bookings, session_id=f"bench-{index}")

        async def tools(name: str, tool_use_id: str, content: str) -> dict:
            return (await runner.run(name, tool_use_id, content)).result

        trace = turn_trace.TurnTrace(f"bench-{index}", "bench", "local")
        token = turn_trace.begin(trace)  # the engine's tasks, created in open(), inherit it
        stream = await engine.open(StreamOptions(session_id=f"bench-{index}"))
        turn_trace.end(token)
        caller = ScriptedCaller(stream, tools, chunk_ms=20)
        if snr_db is not None:
            caller.noise_level = noise_level_for(VOICES[voice_name](lines[0]), snr_db)
        await caller.start(tool_specs=tool_specs())
        turn = await caller.next_turn()
        for line in lines:
            await caller.listen_out(turn)  # fast-forward the playback wait; speech itself is real time
            pcm = VOICES[voice_name](line)
            await caller.send_silence(0.3, realtime=True)
            marks_before = len(trace.marks)
            await caller.send_audio(pcm, realtime=True)
            ended = time.monotonic() - trailing_quiet(pcm)
            trailing = asyncio.create_task(caller.send_silence(1.5, realtime=True))
            turn = await caller.next_turn()
            await trailing
            for stage, at in list(trace.marks)[marks_before:]:
                STAGES.setdefault(stage, []).append(at - ended)
            if turn.first_audio_at is not None:
                latencies.append(turn.first_audio_at - ended)
                AUDIBLE.append(turn.first_audio_at - ended + leading_silence(turn.audio))
                slowest.append((turn.first_audio_at - ended, f"{voice_name}: {line!r} -> {turn.user_text!r}"))
        await caller.hang_up()

    jobs = []
    for i in range(concurrent):
        voice = voices[i % len(voices)]
        for d, lines in enumerate(dialogues):
            jobs.append((voice, lines, i * 100 + d))
    for start in range(0, len(jobs), concurrent):
        await asyncio.gather(*(one(v, lines, idx) for v, lines, idx in jobs[start : start + concurrent]))
    await engine.close()
    await store.close()
    for lat, what in sorted(slowest, reverse=True)[:3]:
        print(f"     slow turn {lat * 1000:.0f} ms  {what}")

    # Baseline: how long after the end of speech the recogniser alone reports the endpoint (no dialogue/TTS).
    assets = build_assets(settings_dir)
    rec = StreamingRecognizer(assets)
    done = _end_of_turn_event()
    endpoint_delays: list[float] = []
    for lines in dialogues:
        for line in lines:
            pcm = VOICES[voices[0]](line)
            rec.feed(bytes(16000))  # 0.5 s silence
            speech_end = rec.position + len(pcm) / 32000 - trailing_quiet(pcm)
            for off in range(0, len(pcm) + 32000, 640):
                chunk = (pcm + bytes(32000))[off : off + 640]
                if any(isinstance(e, done) for e in rec.feed(chunk)):
                    endpoint_delays.append(rec.position - speech_end)
                    break
    return latencies, endpoint_delays


def _end_of_turn_event() -> type:
    """What ends a turn in this version of the recogniser (a confirmation, or the utterance itself before)."""
    from runtime.engine import asr

    return getattr(asr, "TurnConfirmed", Utterance)


def asr_rtf(settings_dir: Path) -> None:
    assets = build_assets(settings_dir)
    rec = StreamingRecognizer(assets)
    generic = GenericRecognizer()
    audio = [hibari_voice(line) for lines in DIALOGUES for line in lines]
    seconds = sum(len(a) for a in audio) / 32000
    frame_costs: list[float] = []
    started = time.perf_counter()
    for pcm in audio:
        rec.search = "domain"
        for off in range(0, len(pcm) + 19200, 640):
            frame = (pcm + bytes(19200))[off : off + 640]
            t0 = time.perf_counter()
            rec.feed(frame)
            frame_costs.append(time.perf_counter() - t0)
    domain = time.perf_counter() - started
    started = time.perf_counter()
    for pcm in audio:
        generic.decode(pcm)
    gen = time.perf_counter() - started
    print(f"ASR  domain LM streaming RTF {domain / seconds:.3f}  | baseline generic LM batch RTF "
          f"{gen / seconds:.3f}  | ratio {domain / gen:.2f}  ({seconds:.0f} s of speech)")
    print(f"ASR  per-20 ms-frame cost: median {statistics.median(frame_costs) * 1000:.2f} ms, "
          f"p95 {pct(frame_costs, 0.95) * 1000:.2f} ms, max {max(frame_costs) * 1000:.1f} ms")


def tts_rtf() -> None:
    tts = Synthesizer()
    tts.warm_up()
    texts = ["Great.", "Thank you, Alice.", "May I have your name for the booking?",
             "That's a table for four people tomorrow, Sunday, November twenty second at seven p.m., under the "
             "name Alice Smith.", "Your table is booked.", "Your booking number is B K, A M 2 R, 6 E S K, 4 K.",
             "Is there anything else I can help with?"]
    started = time.perf_counter()
    audio_s = 0.0
    firsts = []
    leads = []
    for text in texts:
        t0 = time.perf_counter()
        pcm = tts.synthesize(text)
        firsts.append(time.perf_counter() - t0)
        audio_s += len(pcm) / 2 / 24000
        x = np.abs(np.frombuffer(pcm, "<i2"))
        leads.append(int(np.argmax(x > 100)) / 24000)  # the synthesiser's silence ahead of the voice
    hib = time.perf_counter() - started
    started = time.perf_counter()
    esp_audio = 0.0
    for text in texts:
        wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
        esp_audio += (len(wav) - 44) / 2 / 22050
    esp = time.perf_counter() - started
    print(f"TTS  hibari RTF {hib / audio_s:.3f} ({audio_s:.1f} s audio; per sentence median "
          f"{statistics.median(firsts) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms) | baseline espeak-ng "
          f"subprocess RTF {esp / esp_audio:.3f} | ratio {hib / audio_s / (esp / esp_audio):.1f}x")
    print(f"TTS  silence ahead of the voice in hibari's output: median {statistics.median(leads) * 1000:.0f} ms, "
          f"max {max(leads) * 1000:.0f} ms (the engine trims it, runtime/engine/tts.py)")
    try:
        from runtime.engine.tts import split_for_speech, trim_silence
    except ImportError:  # an older engine: whole sentences, untrimmed
        return
    clause_firsts = []
    for text in texts:
        t0 = time.perf_counter()
        trim_silence(tts.synthesize(split_for_speech(text)[0]))
        clause_firsts.append(time.perf_counter() - t0)
    print(f"TTS  first chunk as the engine speaks it (first clause, trimmed): median "
          f"{statistics.median(clause_firsts) * 1000:.0f} ms, max {max(clause_firsts) * 1000:.0f} ms")


def wer_survey(settings_dir: Path) -> None:
    assets = build_assets(settings_dir)
    lines = [line for d in DIALOGUES for line in d if line not in OUT_OF_DOMAIN]
    print("WER  of in-domain caller utterances, streaming recogniser with the dialogue's search per state:")
    for name, voice in VOICES.items():
        row = []
        for snr in (None, 20.0):
            rec = StreamingRecognizer(assets)
            rng = np.random.default_rng(5)
            level = noise_level_for(voice(lines[0]), snr) if snr else 0.0
            errors = words = 0
            for line in lines:
                rec.search = SEARCH_FOR.get(line, "domain")
                pcm = bytes(9600) + voice(line) + bytes(19200)
                if level:
                    x = np.frombuffer(pcm, "<i2").astype(np.float32) + rng.normal(0, level, len(pcm) // 2)
                    pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
                heard = " ".join(e.text for e in rec.feed(pcm) if isinstance(e, Utterance))
                e, n = word_errors(line, heard)
                errors, words = errors + e, words + n
            row.append(f"{errors / words:6.1%}")
        print(f"     {name:22s} clean {row[0]}   20 dB SNR {row[1]}   ({words} words)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrent", type=int, default=1, help="dialogues at once (shared 2-core box)")
    parser.add_argument("--quick", action="store_true", help="two dialogues, two voices, latency and TTS only")
    parser.add_argument("--snr", type=float, default=None, help="white noise on the caller's line at this SNR (dB)")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp())
    voices = ["hibari-1.0", "hibari-1.2", "espeak-en-us+f2-150"]
    dialogues = DIALOGUES
    if args.quick:
        voices, dialogues = ["hibari-1.2", "espeak-en-us+f2-150"], DIALOGUES[:2]
    latencies: list[float] = []
    endpoint: list[float] = []
    for voice in voices:
        lat, ep = await latency_run(cache, [voice], args.concurrent, dialogues, args.snr)
        latencies += lat
        endpoint += ep
    noise = "clean" if args.snr is None else f"{args.snr:.0f} dB SNR"
    print(f"LAT  end of speech -> first assistant audio over {len(latencies)} turns "
          f"({len(dialogues) * len(voices) * args.concurrent} dialogues, {args.concurrent} at once, {noise}, "
          f"voices {', '.join(voices)}): "
          f"p50 {pct(latencies, 0.5) * 1000:.0f} ms, p95 {pct(latencies, 0.95) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    audible = (f"p50 {pct(AUDIBLE, 0.5) * 1000:.0f} ms, p95 {pct(AUDIBLE, 0.95) * 1000:.0f} ms, "
               f"max {max(AUDIBLE) * 1000:.0f} ms")
    print(f"     to the first audible sample (what a caller hears; the bytes ahead of it are silence): {audible}")
    print(f"     baseline: endpoint detection alone p50 {pct(endpoint, 0.5) * 1000:.0f} ms, p95 "
          f"{pct(endpoint, 0.95) * 1000:.0f} ms | ratio p50 {pct(latencies, 0.5) / pct(endpoint, 0.5):.2f}")
    for stage in turn_trace.STAGES:
        if STAGES.get(stage):
            print(f"     stage {stage:16s} median {statistics.median(STAGES[stage]) * 1000:6.0f} ms after the end of "
                  f"speech ({len(STAGES[stage])} stamps)")
    if not args.quick:
        asr_rtf(cache)
    tts_rtf()
    if not args.quick:
        wer_survey(cache)


if __name__ == "__main__":
    asyncio.run(main())
