"""The domain LM is an artefact of the committed corpus generator: rebuilding it anywhere gives the same
files, and every word the dialogue listens for is in the recogniser's dictionary."""

from __future__ import annotations

from pathlib import Path

from runtime.engine.lm.build import build_assets
from runtime.engine.parsing import MONTHS, NATO, UNITS, WEEKDAYS


def test_rebuilding_from_the_generator_is_byte_identical(tmp_path: Path) -> None:
    first = build_assets(tmp_path / "a")
    second = build_assets(tmp_path / "b")
    assert first.lm.read_bytes() == second.lm.read_bytes()
    assert first.dictionary.read_bytes() == second.dictionary.read_bytes()
    assert first.lm.parent.name == second.lm.parent.name  # cache key = hash of corpus + grammars


def test_dictionary_covers_what_the_dialogue_understands(tmp_path: Path) -> None:
    assets = build_assets(tmp_path)
    words = {line.split()[0].split("(")[0] for line in assets.dictionary.read_text().splitlines()}
    needed = set(MONTHS) | set(WEEKDAYS) | set(UNITS[1:]) | {"tomorrow", "today", "pm", "p.m.", "half", "quarter",
                                                              "past", "people", "yes", "no", "cancel", "booking"}
    needed |= {w for w in NATO if w != "xray"}
    assert needed <= words, sorted(needed - words)
