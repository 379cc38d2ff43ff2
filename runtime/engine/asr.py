"""Streaming speech recognition per stream: Silero decides where turns begin and end, pocketsphinx decodes.

Each stream owns a small decoder (the domain LM with its ~370-word dictionary loads in ~20 ms and ~20 MB)
that switches search per dialogue state: the domain trigram LM for free answers, a JSGF grammar of exactly
ten letters/digits for booking ids, and a names grammar for the name question. (No yes/no grammar: a
grammar forces any sound into "yes" or "no", which is unsafe right before a cancellation; the domain LM
keeps other words possible.)

End of turn (docs/offline-engine.md) is a two-step decision from Silero's speech probability with
hysteresis (runtime/engine/vad.py) and the decoder's partial hypothesis:

1. *likely*: ``LIKELY_SILENCE`` after the last voice window, with the partial hypothesis unchanged for
   ``STABLE_FRAMES`` frames: the utterance is decoded to its final text and handed out as an ``Utterance``
   at once, so the engine can prepare the reply speculatively;
2. *confirmed*: the silence has lasted ``confirm`` seconds — ``CONFIRM_SILENCE``, longer on a noisy line
   (``NOISE_EXTRA``) and much longer after a fragment ("hi there", "... for", ``FRAGMENT_HOLD``) —
   reported as ``TurnConfirmed``. Voice that comes back before that (``SpeechResumed``) supersedes the
   utterance: the next one carries both parts' text and audio, so "hi there … i would like to book"
   becomes one turn.

The big generic CMU model (100 MB) is loaded once per process and shared behind a lock: it is only used,
in batch, to re-decode an utterance the domain search could not make sense of.

Everything here is synchronous and CPU-bound; the engine calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pocketsphinx import Decoder

from runtime.engine.lm.build import LanguageAssets
from runtime.engine.parsing import is_fragment
from runtime.engine.vad import VoiceActivity

SAMPLE_RATE = 16_000
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le
FRAME_SECONDS = FRAME_BYTES / 2 / SAMPLE_RATE
# Silero's first confident window comes just after the onset: decode from a little before it (more
# would feed the line's noise to the grammars, which force it into words: "frank" for 240 ms of noise).
PREROLL_FRAMES = 5  # 100 ms
ONSET_WINDOWS = 3  # strong Silero windows (32 ms each) before a segment counts as speech (barge-in, a turn)
LIKELY_SILENCE = 0.08  # seconds after the last voice window: end of turn likely, decode and speculate
STABLE_FRAMES = 2  # ... once the partial hypothesis has not changed for this many 20 ms frames
CONFIRM_SILENCE = 0.16  # seconds after the last voice window: the turn is over (clean line)
NOISE_EXTRA = 0.18  # at most this much longer on a line whose noise Silero finds speech-like
NOISE_FLOOR_FULL = 0.25  # the noise-floor probability at which the whole NOISE_EXTRA applies
FRAGMENT_HOLD = 0.45  # longer still when the text so far is not a complete request ("hi there", "... for")
MAX_UTTERANCE_SECONDS = 20.0  # a turn this long is closed anyway (endless noise must not hold the call)


@dataclass(slots=True)
class SpeechStarted:
    """Confirmed speech onset (Silero agrees for ``ONSET_WINDOWS``): the trigger for barge-in."""

    at: float  # seconds of input audio


@dataclass(slots=True)
class Utterance:
    """The final text of a turn whose end is *likely*; ``TurnConfirmed`` with its ``seq`` confirms it."""

    text: str
    start: float  # seconds of input audio
    end: float  # where the end of turn became likely
    audio: bytes = field(repr=False)
    search: str = "domain"
    seq: int = 0
    voice_end: float = 0.0  # end of the last voice window: the guest's end of speech
    confirm_after: float = CONFIRM_SILENCE  # silence (after voice_end) the recogniser waits to confirm


@dataclass(slots=True)
class TurnConfirmed:
    """The silence after utterance ``seq`` lasted long enough: the guest has finished."""

    seq: int
    at: float


@dataclass(slots=True)
class SpeechResumed:
    """The guest went on speaking before utterance ``seq`` was confirmed: it is superseded (merged ahead)."""

    seq: int
    at: float


AsrEvent = SpeechStarted | Utterance | TurnConfirmed | SpeechResumed


def _decode_batch(decoder: Decoder, pcm: bytes) -> str:
    """Decode ``pcm`` as one whole utterance (the decoder must be idle)."""
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp else ""


class GenericRecognizer:
    """The bundled generic en-us LM, shared by all streams; batch decoding only."""

    def __init__(self) -> None:
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._lock = threading.Lock()

    def decode(self, pcm: bytes) -> str:
        with self._lock:
            return _decode_batch(self._decoder, pcm)


class StreamingRecognizer:
    """Turn detection and decoding for one stream. ``search`` may be changed between utterances."""

    SEARCHES = ("domain", "bookingid", "name")

    def __init__(self, assets: LanguageAssets, *, fragment: Callable[[str], bool] = is_fragment) -> None:
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=str(assets.lm),
                                dict=str(assets.dictionary))
        self._decoder.add_lm_file("domain", str(assets.lm))
        self._decoder.add_jsgf_string("bookingid", assets.id_grammar)
        self._decoder.add_jsgf_string("name", assets.name_grammar)
        self._decoder.activate_search("domain")
        # Whether text so far is only the first part of a turn; the engine widens it with dialogue knowledge.
        # Called on the decoding thread: it must only read.
        self.fragment = fragment
        self._vad = VoiceActivity()
        self._ring: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._pending_bytes = b""
        self._samples = 0
        self._active_search = "domain"
        self.search = "domain"
        self._seq = 0
        # the utterance being decoded (None between utterances)
        self._in_utt = False
        self._utt_audio = bytearray()
        self._utt_start = 0.0
        self._strong = 0  # strong windows in this segment
        self._announced = False
        self._last_voice = 0.0  # input seconds at the end of the last voice window
        self._hyp = ""
        self._stable = 0
        # handed out as likely, not yet confirmed: kept to merge with a continuation
        self._pending: Utterance | None = None

    @property
    def position(self) -> float:
        """Seconds of input audio consumed: the engine's clock for barge-in decisions."""
        return self._samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._in_utt

    @property
    def noise_floor(self) -> float:
        return self._vad.noise_floor

    def feed(self, pcm: bytes) -> list[AsrEvent]:
        """Consume audio of any length (re-framed to 20 ms); return onsets, utterances and confirmations."""
        data = self._pending_bytes + pcm
        usable = len(data) // FRAME_BYTES * FRAME_BYTES
        self._pending_bytes = data[usable:]
        events: list[AsrEvent] = []
        for off in range(0, usable, FRAME_BYTES):
            self._frame(data[off : off + FRAME_BYTES], events)
        return events

    def _frame(self, frame: bytes, events: list[AsrEvent]) -> None:
        self._samples += FRAME_BYTES // 2
        windows = self._vad.process(frame)
        now = self.position
        if self._in_utt:
            self._decoder.process_raw(frame, full_utt=False)
            self._utt_audio += frame
        for w in windows:
            if w.voice:
                self._last_voice = now
            if w.strong:
                if not self._in_utt:
                    self._begin(frame)
                self._strong += 1
                if not self._announced and self._strong >= ONSET_WINDOWS:
                    self._announced = True
                    if self._pending is not None:  # the guest went on: merge with what came before
                        events.append(SpeechResumed(seq=self._pending.seq, at=now))
                    else:
                        events.append(SpeechStarted(at=self._utt_start))
        self._ring.append(frame)
        silence = now - self._last_voice
        if self._in_utt:
            self._maybe_end(silence, now, events)
        elif self._pending is not None and silence >= self._pending.confirm_after:
            events.append(TurnConfirmed(seq=self._pending.seq, at=now))
            self._pending = None

    def _maybe_end(self, silence: float, now: float, events: list[AsrEvent]) -> None:
        too_long = now - self._utt_start >= MAX_UTTERANCE_SECONDS
        if not self._announced:
            if silence >= LIKELY_SILENCE or too_long:  # a blip too short to be speech: drop it; a pending
                self._stop()  # turn carries on
            return
        if silence <= 0.0 and not too_long:  # voice in this frame
            self._stable = 0
            return
        # Partial-hypothesis stability, from the first silent frame on: the decoder has caught up with the
        # words when its best path stops changing.
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp else ""
        self._stable = self._stable + 1 if text == self._hyp else 0
        self._hyp = text
        likely = silence >= LIKELY_SILENCE and self._stable >= STABLE_FRAMES
        if likely or silence >= CONFIRM_SILENCE or too_long:
            events.append(self._finish(now))

    def abandon(self) -> None:
        """Input ended mid-utterance (hang-up): drop the partial utterance and any unconfirmed one."""
        self._stop()
        self._pending = None
        self._pending_bytes = b""

    def _begin(self, frame: bytes) -> None:
        if self._pending is None and self.search != self._active_search and self.search in self.SEARCHES:
            self._decoder.activate_search(self.search)
            self._active_search = self.search
        self._decoder.start_utt()
        audio = b"".join(self._ring) + frame
        self._decoder.process_raw(audio, full_utt=False)
        self._in_utt = True
        self._utt_audio = bytearray(audio)
        self._utt_start = max(0.0, self.position - len(audio) / 2 / SAMPLE_RATE)
        self._strong = 0
        self._announced = False
        self._hyp = ""
        self._stable = 0

    def _stop(self) -> None:
        if self._in_utt:
            with contextlib.suppress(RuntimeError):
                self._decoder.end_utt()
        self._in_utt = False
        self._utt_audio = bytearray()

    def _finish(self, now: float) -> Utterance:
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        text = (hyp.hypstr if hyp else "").strip()
        audio, start = bytes(self._utt_audio), self._utt_start
        self._in_utt = False
        self._utt_audio = bytearray()
        if self._pending is not None:  # a continuation: one turn with the part before the pause
            before = self._pending
            audio, start = before.audio + audio, before.start
            # A grammar (a booking id of exactly ten symbols, a name) matches only the whole answer, so neither
            # part decodes on its own: then the joined audio is decoded again, as one utterance.
            grammar = self._active_search != "domain"
            text = _decode_batch(self._decoder, audio).strip() if grammar else f"{before.text} {text}".strip()
        extra = NOISE_EXTRA * min(1.0, self._vad.noise_floor / NOISE_FLOOR_FULL)
        # A booking id is spelled symbol by symbol and guests pause between the symbols: every pause in it
        # is mid-turn, whatever the text decoded so far.
        held = self._active_search == "bookingid" or self.fragment(text)
        confirm = CONFIRM_SILENCE + extra + (FRAGMENT_HOLD if held else 0.0)
        self._seq += 1
        utt = Utterance(text=text, start=start, end=now, audio=audio, search=self._active_search, seq=self._seq,
                        voice_end=self._last_voice, confirm_after=confirm)
        self._pending = utt
        return utt
