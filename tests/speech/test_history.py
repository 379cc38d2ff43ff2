"""History replay limits (Nova Sonic: ≤40 KB, ≤1 KB per textInput, first message USER)."""

from __future__ import annotations

import itertools
import json

from runtime.speech import protocol as p
from runtime.speech.history import build_history, split_utf8


def test_merges_same_role_and_drops_leading_assistant() -> None:
    history = build_history([("ASSISTANT", "Welcome!"), ("USER", "Hi"), ("USER", "a table please"),
                             ("ASSISTANT", "For how many?"), ("ASSISTANT", ""), ("USER", "four")])
    assert [(m.role, m.text) for m in history] == [("USER", "Hi a table please"), ("ASSISTANT", "For how many?"),
                                                   ("USER", "four")]


def test_long_messages_are_split_on_character_boundaries() -> None:
    text = "é" * 700 + "🍝" * 300  # 1400 + 1200 bytes of multi-byte characters
    [message] = build_history([("USER", text)])
    assert message.text == text
    assert all(len(chunk.encode()) <= 1000 for chunk in message.chunks)
    assert split_utf8("", 10) == []


def test_total_stays_under_40kb_keeping_the_newest_and_starting_with_user() -> None:
    turns = [("USER" if i % 2 == 0 else "ASSISTANT", f"{i:04d} " + "x" * 995) for i in range(100)]
    history = build_history(turns)
    assert sum(m.size for m in history) <= 40_000
    assert history[0].role == "USER"
    assert history[-1].text.startswith("0099")
    roles = [m.role for m in history]
    assert all(a != b for a, b in itertools.pairwise(roles))


def test_events_are_json_not_templates() -> None:
    tricky = 'She said "table for 2"\nthen left \\ {braces}'
    event = p.text_input("prompt", "content", tricky)
    assert json.loads(json.dumps(event))["event"]["textInput"]["content"] == tricky
    start = p.session_start(endpointing_sensitivity="HIGH")["event"]["sessionStart"]
    assert start["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}
    assert "endpointingSensitivity" not in start
    assert p.generation_stage({"additionalModelFields": '{"generationStage":"SPECULATIVE"}'}) == "SPECULATIVE"
    assert p.generation_stage({"additionalModelFields": "not json"}) is None
    assert p.strip_interruption('ok { "interrupted" : true }') == "ok"
