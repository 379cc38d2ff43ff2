"""Streaming speech recognition: pocketsphinx Endpointer + Decoder on 20 ms frames, per stream.

Each stream owns a small decoder (the domain LM with its ~370-word dictionary loads in ~20 ms and ~20 MB)
that switches search per dialogue state: the domain trigram LM for free answers, a JSGF grammar of exactly
ten letters/digits for booking ids, and a names grammar for the name question. (No yes/no grammar: a
grammar forces any sound into "yes" or "no", which is unsafe right before a cancellation; the domain LM
keeps other words possible.)

The big generic CMU model (100 MB) is loaded once per process and shared behind a lock: it is only used,
in batch, to re-decode an utterance the domain search could not make sense of.

Everything here is synchronous and CPU-bound; the engine calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field

from pocketsphinx import Decoder, Endpointer

from runtime.engine.lm.build import LanguageAssets
from runtime.engine.vad import SpeechGate

SAMPLE_RATE = 16_000
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le
FRAME_SECONDS = FRAME_BYTES / 2 / SAMPLE_RATE
PREROLL_FRAMES = 5  # 100 ms of audio before the detected onset goes to the decoder too
MIN_SPEECH_WINDOWS = 3  # Silero windows (32 ms each) before a segment counts as speech


@dataclass(slots=True)
class SpeechStarted:
    """Confirmed speech onset (Silero agrees): the trigger for barge-in."""

    at: float  # seconds of input audio


@dataclass(slots=True)
class Utterance:
    text: str
    start: float  # seconds of input audio
    end: float
    audio: bytes = field(repr=False)
    search: str = "domain"


AsrEvent = SpeechStarted | Utterance


class GenericRecognizer:
    """The bundled generic en-us LM, shared by all streams; batch decoding only."""

    def __init__(self) -> None:
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._lock = threading.Lock()

    def decode(self, pcm: bytes) -> str:
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
            return hyp.hypstr if hyp else ""


class StreamingRecognizer:
    """Endpointing and decoding for one stream. ``search`` may be changed between utterances."""

    SEARCHES = ("domain", "bookingid", "name")

    # Endpointing: the turn ends after ~window*ratio = 0.18 s of non-speech: quick answers, and the decoder
    # gets its own pre-roll (see feed), so a short window no longer clips word onsets.
    def __init__(self, assets: LanguageAssets, *, window: float = 0.2, ratio: float = 0.9) -> None:
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=str(assets.lm),
                                dict=str(assets.dictionary))
        self._decoder.add_lm_file("domain", str(assets.lm))
        self._decoder.add_jsgf_string("bookingid", assets.id_grammar)
        self._decoder.add_jsgf_string("name", assets.name_grammar)
        self._decoder.activate_search("domain")
        self._endpointer = Endpointer(window=window, ratio=ratio, vad_mode=3, sample_rate=SAMPLE_RATE,
                                      frame_length=FRAME_BYTES / 2 / SAMPLE_RATE)
        self._gate = SpeechGate()
        self._ring: deque[bytes] = deque(maxlen=round((window + 0.2) / FRAME_SECONDS) + PREROLL_FRAMES)
        self._pending = b""
        self._samples = 0
        self._utt_audio = bytearray()
        self._utt_start = 0.0
        self._announced = False
        self._active_search = "domain"
        self.search = "domain"

    @property
    def position(self) -> float:
        """Seconds of input audio consumed: the engine's clock for barge-in decisions."""
        return self._samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return bool(self._endpointer.in_speech)

    def feed(self, pcm: bytes) -> list[AsrEvent]:
        """Consume audio of any length (re-framed to 20 ms); return onsets and finished utterances."""
        data = self._pending + pcm
        usable = len(data) // FRAME_BYTES * FRAME_BYTES
        self._pending = data[usable:]
        events: list[AsrEvent] = []
        for off in range(0, usable, FRAME_BYTES):
            frame = data[off : off + FRAME_BYTES]
            self._samples += FRAME_BYTES // 2
            self._ring.append(frame)
            was_in_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            self._gate.process(frame)
            if speech is None:
                if not self._endpointer.in_speech:
                    self._gate.reset_count()
                continue
            if not was_in_speech:
                self._begin()
                # The endpointer hands back audio one window late and trimmed tight to the voice, which
                # clips onsets and soft endings ("smith"). Decode our own copy instead: from a little
                # before the detected start up to now, then every new frame as it arrives.
                lead = round((self.position - float(self._endpointer.speech_start)) / FRAME_SECONDS)
                audio = b"".join(list(self._ring)[-(lead + PREROLL_FRAMES) :])
            else:
                audio = frame
            self._decoder.process_raw(audio, full_utt=False)
            self._utt_audio += audio
            if not self._announced and self._gate.speech_windows >= MIN_SPEECH_WINDOWS:
                self._announced = True
                events.append(SpeechStarted(at=self._utt_start))
            if not self._endpointer.in_speech:
                utt = self._finish()
                if utt is not None:
                    events.append(utt)
        return events

    def abandon(self) -> None:
        """Input ended mid-utterance (hang-up): drop the partial utterance without a result."""
        if self._endpointer.in_speech or self._utt_audio:
            with contextlib.suppress(RuntimeError):
                self._decoder.end_utt()
        self._utt_audio = bytearray()
        self._pending = b""

    def _begin(self) -> None:
        if self.search != self._active_search and self.search in self.SEARCHES:
            self._decoder.activate_search(self.search)
            self._active_search = self.search
        self._decoder.start_utt()
        self._utt_audio = bytearray()
        self._utt_start = float(self._endpointer.speech_start)
        self._announced = False

    def _finish(self) -> Utterance | None:
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        speechy = self._gate.speech_windows >= MIN_SPEECH_WINDOWS
        self._gate.reset_count()
        audio = bytes(self._utt_audio)
        self._utt_audio = bytearray()
        if not speechy:
            return None  # the endpointer fired on noise: Silero heard no voice
        return Utterance(text=hyp.hypstr if hyp else "", start=self._utt_start, end=self.position, audio=audio,
                         search=self._active_search)
