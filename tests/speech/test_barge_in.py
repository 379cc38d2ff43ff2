"""Barge-in: whichever signal the model sends, queued assistant audio is flushed once, at once."""

from __future__ import annotations

import pytest

from emulators.nova_sonic import Interrupt, Say, Script, Turn
from runtime.speech.ports import OUTPUT_RATE
from tests.speech.conftest import speak

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("signal", ["marker", "stop_reason", "both"])
async def test_barge_in_flushes_audio_and_keeps_the_marker_out_of_the_transcript(harness, store, signal) -> None:
    story = "Once upon a time there was a chef who cooked all night long"
    script = Script([
        Turn("tell me a story", Interrupt(story, audio_ms=3000, after_ms=300, signal=signal)),
        Turn("actually, book a table", Say("Sure, for how many guests?", 200)),
    ])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: bool(out.of_type("interrupted")))
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("done")

    assert len(out.of_type("interrupted")) == 1
    assert out.flushes == 1
    # Only what was generated before the interruption was ever delivered (300 ms, not 3 s) ...
    assert out.audio_bytes == (300 + 200) * OUTPUT_RATE // 1000 * 2
    # ... and after the flush only the next answer's audio is queued.
    assert sum(map(len, out.chunks)) == 200 * OUTPUT_RATE // 1000 * 2
    turns = [(t.role, t.text) for t in await store.conversations.list(session.session_id)]
    assert turns == [("USER", "tell me a story"), ("ASSISTANT", "Once upon a time there was"),
                     ("USER", "actually, book a table"), ("ASSISTANT", "Sure, for how many guests?")]
    assert all("interrupted" not in m.get("text", "") for m in out.of_type("transcript"))
