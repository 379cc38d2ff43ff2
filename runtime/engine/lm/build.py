"""Build (once, then cache) the domain LM, its pronunciation dictionary and the per-state grammars.

Building takes about a second, so the artefacts are made at first use into a cache directory keyed by a
hash of the corpus text: change the generator and the next start rebuilds; no generated file is committed.
The id grammar is built here too, so its words are in the dictionary. The ARPA builder is pocketsphinx's
own ``pocketsphinx.lm.ArpaBoLM`` (the reference's tool).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pocketsphinx import get_model_path
from pocketsphinx.lm import ArpaBoLM

from runtime.engine.lm.corpus import FIRST_NAMES, LAST_NAMES, corpus_text
from runtime.engine.parsing import DIGIT_WORDS, NATO

log = logging.getLogger("runtime.engine.lm")

_ID_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


@dataclass(frozen=True, slots=True)
class LanguageAssets:
    lm: Path  # ARPA trigram LM of the booking domain
    dictionary: Path  # pronunciations of every word any search here can produce
    id_grammar: str  # JSGF: booking ids spoken symbol by symbol
    name_grammar: str  # JSGF: answers to "may I have your name?"


def id_grammar() -> str:
    """Booking ids (``BK-`` + 10 RFC 4648 base32 symbols: A-Z, 2-7), said symbol by symbol, NATO allowed.

    A fixed length of ten symbols is what makes letter recognition usable: the search cannot drop or
    invent a symbol, only confuse similar-sounding ones.
    """
    nato = {w for w in NATO if w != "xray"}  # cmudict spells it "x-ray"
    digits = {w for w, d in DIGIT_WORDS.items() if d in "234567"}
    syms = " | ".join(sorted(set(_ID_LETTERS) | digits | nato))
    return (
        "#JSGF V1.0;\ngrammar bookingid;\n"
        f"<sym> = {syms};\n"
        "<lead> = it's | it is | my booking number is | the booking id is | booking | the number is"
        " | my booking id is | booking number;\n"
        "<escape> = no [thanks | thank you] | never mind | forget it;\n"
        "public <id> = [<lead>] [b k | bravo kilo] [dash] " + " ".join(["<sym>"] * 10) + " | <escape>;\n"
    )


def name_grammar() -> str:
    """Answers to the name question: first and/or last names from the corpus, with the usual lead-ins.

    Names are where the open domain LM is weakest (short, rare words, often swallowed by noise), so the
    name question gets its own search; "say that again" stays possible.
    """
    return (
        "#JSGF V1.0;\ngrammar guestname;\n"
        f"<first> = {' | '.join(FIRST_NAMES)};\n"
        f"<last> = {' | '.join(LAST_NAMES)};\n"
        "<lead> = my name is | it's | the name is | under the name | under | this is | i am | i'm | name is"
        " | it is;\n"
        "public <answer> = [<lead>] (<first> [<last>] | <last>) [please] | [sorry] [can you] (say that again"
        " | repeat that) [please];\n"
    )


def _cache_root(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir) / "engine-cache"
    return Path(tempfile.gettempdir()) / f"nova-concierge-engine-{os.getuid()}"


def _words_of(text: str) -> set[str]:
    return {w for line in text.splitlines() for w in line.split()}


def _dictionary(words: set[str]) -> tuple[str, set[str]]:
    """Entries of cmudict for ``words`` (every alternate pronunciation); returns (text, missing words)."""
    wanted: dict[str, list[str]] = {}
    with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as fh:
        for line in fh:
            head, _, phones = line.partition(" ")
            base = head.split("(", 1)[0]
            if base in words:
                wanted.setdefault(base, []).append(phones.strip())
    lines = [f"{w}{'' if i == 0 else f'({i + 1})'} {p}" for w in sorted(wanted) for i, p in enumerate(wanted[w])]
    return "\n".join(lines) + "\n", words - set(wanted)


def build_assets(data_dir: Path | None = None) -> LanguageAssets:
    """Return the cached assets, building them if the corpus changed. Safe to call from several workers."""
    text = corpus_text()
    grammars = id_grammar() + name_grammar()
    digest = hashlib.sha256((text + grammars).encode()).hexdigest()[:16]
    folder = _cache_root(data_dir) / digest
    lm_path, dict_path = folder / "booking.lm", folder / "booking.dict"
    if not (lm_path.exists() and dict_path.exists()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only data dir (e.g. a locked-down container): build in the temp dir
            folder = _cache_root(None) / digest
            folder.mkdir(parents=True, exist_ok=True)
            lm_path, dict_path = folder / "booking.lm", folder / "booking.dict"
        body = re.sub(r"<[^>]*>|#JSGF V1\.0|grammar \w+|public", " ", grammars)
        grammar_words = set(re.findall(r"[a-z][a-z'.-]*", body))
        vocab = _words_of(text) | grammar_words
        vocab = {w for w in vocab if w.replace("'", "").replace(".", "").replace("-", "").isalpha()}
        dict_text, missing = _dictionary(vocab)
        if missing:
            log.warning("corpus words missing from cmudict (dropped): %s", sorted(missing))
            text = "\n".join(ln for ln in text.splitlines() if not set(ln.split()) & missing) + "\n"
        # A smaller discount than the tool's default 0.5 keeps more mass on seen word sequences, which
        # measurably helped names in 20 dB noise ("alice smith" heard as "alice half" less often).
        lm = ArpaBoLM(text=text, add_start=True, discount_mass=0.2)
        lm.compute()
        out = io.StringIO()
        lm.write(out)
        # Write-then-rename so a concurrent worker never reads a half-written file.
        for path, content in ((lm_path, out.getvalue()), (dict_path, dict_text)):
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(content, encoding="utf-8")
            tmp.replace(path)
        log.info("built domain LM (%d words) in %s", len(vocab) - len(missing), folder)
    return LanguageAssets(lm=lm_path, dictionary=dict_path, id_grammar=id_grammar(), name_grammar=name_grammar())
