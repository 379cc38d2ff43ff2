"""How replayed history represents a conversation the assistant opened (docs/greeting.md)."""

from __future__ import annotations

from runtime.speech.history import build_history

NOTE = "[The guest connected; the assistant greeted them.]"


def pairs(turns: list[tuple[str, str]], **options: object) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in build_history(turns, **options)]  # type: ignore[arg-type]


def test_a_greeting_first_conversation_keeps_the_greeting_behind_a_user_note() -> None:
    turns = [("ASSISTANT", "Welcome to Nova Bistro."), ("USER", "a table for two"), ("ASSISTANT", "When?")]
    assert pairs(turns, lead_in=NOTE) == [("USER", NOTE), *turns]
    assert pairs(turns) == turns[1:]  # without a lead-in the service's USER-first rule drops it, as before


def test_the_note_goes_only_before_an_opening_assistant_message() -> None:
    turns = [("USER", "hello"), ("ASSISTANT", "Hi, welcome.")]
    assert pairs(turns, lead_in=NOTE) == turns
    assert pairs([], lead_in=NOTE) == []
    assert pairs([("ASSISTANT", "Welcome.")], lead_in="  ") == []


def test_trimming_drops_the_note_and_the_greeting_first_and_still_starts_with_user() -> None:
    turns = [("ASSISTANT", "Welcome to Nova Bistro.")]
    turns += [("USER" if i % 2 == 0 else "ASSISTANT", f"{i:03d} " + "x" * 95) for i in range(6)]
    kept = pairs(turns, lead_in=NOTE, max_total=450)
    assert kept[0][0] == "USER"
    assert ("USER", NOTE) not in kept
    assert ("ASSISTANT", "Welcome to Nova Bistro.") not in kept
    assert kept[-1] == turns[-1]
