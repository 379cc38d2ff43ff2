"""Nova Sonic output events against golden samples transcribed from the AWS documentation (tests/speech/shapes.py).

Three producers of output events must agree with the documented shapes, each checked on its own: the
client's builders (``runtime.speech.protocol``, used by the offline engine), the emulator (its own
transcription, ``emulators.nova_sonic_events``) as the real SDK client receives it over the wire, and the
offline engine over a short dialogue. The checker itself is tested to refuse each kind of departure, so a
lenient checker fails here.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulators import nova_sonic as emu
from emulators.nova_sonic import CallTool, Interrupt, Say, Turn
from runtime.bookings.service import BookingService
from runtime.engine import OfflineEngine
from runtime.settings import Settings, load_settings
from runtime.speech import protocol as p
from runtime.speech.model import StreamOptions
from runtime.speech.tools import ToolRunner, tool_specs
from runtime.stores.sqlite import SQLiteStore
from tests.engine.voices import hibari_voice
from tests.speech.conftest import environment_credentials, served_model
from tests.speech.shapes import ShapeError, check, flow_problems, golden_for, goldens, problems
from tools.engine_caller import ScriptedCaller

pytestmark = pytest.mark.timeout(60)

OUTPUT_BUILDERS = ("completion_start", "completion_end", "text_output_content_start", "text_output",
                   "audio_output_content_start", "audio_output", "tool_use_content_start", "tool_use",
                   "output_content_end", "usage_event")
IDS = p.OutputIds("session-1", "prompt-1", "completion-1", "content-1")
PCM = b"\x01\x00\x02\x00"


def _builder_events() -> list[dict[str, Any]]:
    """One event from every output builder in protocol.py, with every variant the runtime uses."""
    delta = {"input": {"speechTokens": 3, "textTokens": 1}, "output": {"speechTokens": 20, "textTokens": 4}}
    return [
        p.completion_start(IDS),
        *(p.text_output_content_start(IDS, role, stage) for role in ("USER", "ASSISTANT")  # type: ignore[arg-type]
          for stage in ("SPECULATIVE", "FINAL")),  # type: ignore[arg-type]
        p.text_output(IDS, "ASSISTANT", "Hello."),
        p.text_output(IDS, "ASSISTANT", p.INTERRUPTED_MARKER),
        *(p.output_content_end(IDS, "TEXT", stop) for stop in ("PARTIAL_TURN", "END_TURN", "INTERRUPTED")),
        *(p.audio_output_content_start(IDS, rate=rate) for rate in (8_000, 16_000, 24_000)),
        p.audio_output(IDS, PCM),
        *(p.output_content_end(IDS, "AUDIO", stop) for stop in ("PARTIAL_TURN", "END_TURN")),
        p.tool_use_content_start(IDS),
        p.tool_use(IDS, "get_current_date_time", "tool-use-1", {}),
        p.tool_use(IDS, "create_restaurant_booking", "tool-use-2", '{"name": "Ana"}'),
        p.output_content_end(IDS, "TOOL", "TOOL_USE"),
        p.usage_event(IDS, delta=delta, total=delta),
        p.completion_end(IDS),
    ]


def _matched(events: list[dict[str, Any]]) -> set[str]:
    return {golden_for(event).file for event in events}


def _assert_golden(events: list[dict[str, Any]]) -> None:
    found = [f"{json.dumps(event)[:160]}: {problem}" for event in events for problem in problems(event)]
    assert not found, "\n".join(found)


# --- (a) the client's builders ------------------------------------------------------------------------

def test_every_output_builder_produces_the_documented_shape() -> None:
    events = _builder_events()
    _assert_golden(events)
    assert _matched(events) == {g.file for g in goldens()}  # every documented event has a builder
    assert len(goldens()) == 12


def test_builder_token_totals_add_up() -> None:
    delta = {"input": {"speechTokens": 3, "textTokens": 1}, "output": {"speechTokens": 20, "textTokens": 4}}
    body = p.usage_event(IDS, delta=delta, total=delta)["event"]["usageEvent"]
    assert (body["totalInputTokens"], body["totalOutputTokens"], body["totalTokens"]) == (4, 24, 28)


# --- (b) the emulator, as the real SDK client receives it -----------------------------------------------

async def _tool(name: str, tool_use_id: str, content: str) -> dict[str, Any]:
    return {"date": "2026-12-02", "tool": name}


async def test_emulator_output_over_the_wire_matches_the_golden_samples(
        certs: emu.TestCertificates, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def borrowed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the emulator used a client output builder")

    for name in OUTPUT_BUILDERS:  # the emulator must not lean on the client's spellings
        monkeypatch.setattr(p, name, borrowed)
    async with served_model(certs, settings, monkeypatch, environment_credentials(), echo_text_input=True,
                            idle_usage_seconds=0.05) as (emulator, model):
        emulator.add_turns(
            Turn("hello", Say("Hello, how can I help?", 200)),
            Turn("what day is it", CallTool("get_current_date_time", {}), Say("It is {date}.", 200)),
            Turn("book it", CallTool("create_restaurant_booking", {"name": "Ana"}, double_encoded=True),
                 Interrupt("Booking a table for you right now, one moment please", audio_ms=800, after_ms=100)),
        )
        stream = await model.open(StreamOptions(session_id="golden"))
        caller = ScriptedCaller(stream, _tool)
        try:
            await caller.start(tool_specs=tool_specs(), output_rate=16_000)
            for text in ("hello", "what day is it", "book it"):
                await caller.type_text(text)
                await caller.next_turn(wait=10)
            await asyncio.sleep(0.2)  # idle: usage keeps coming
        finally:
            await caller.hang_up()
    assert caller.error is None
    events = caller.all_events
    _assert_golden(events)
    assert not flow_problems(events), flow_problems(events)
    assert _matched(events) == {g.file for g in goldens()}  # the exchange covered every documented event
    rates = {e["event"]["contentStart"]["audioOutputConfiguration"]["sampleRateHertz"] for e in events
             if e["event"].get("contentStart", {}).get("type") == "AUDIO"}
    assert rates == {16_000}  # the rate the client asked for in promptStart
    after_last = events[[i for i, e in enumerate(events) if "completionEnd" in e["event"]][-1] + 1:]
    assert any("usageEvent" in e["event"] for e in after_last)  # idle usage, still with a completionId


# --- (c) the offline engine --------------------------------------------------------------------------

@pytest.fixture
async def engine_caller(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> AsyncIterator[ScriptedCaller]:
    settings = load_settings(data_dir=tmp_path_factory.getbasetemp() / "golden-engine-cache",
                             sqlite_path=tmp_path / "bookings.db", restaurant_name="Nova Bistro",
                             session_secret="golden-tests-secret")
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    runner = ToolRunner(BookingService(store.bookings, settings), session_id="golden-engine")

    async def run_tool(name: str, tool_use_id: str, content: str) -> dict[str, Any]:
        return (await runner.run(name, tool_use_id, content)).result

    engine = OfflineEngine(settings)
    await engine.warm_up()
    caller = ScriptedCaller(await engine.open(StreamOptions(session_id="golden-engine")), run_tool)
    try:
        await caller.start(tool_specs=tool_specs())
        yield caller
    finally:
        await caller.hang_up()
        await engine.close()
        await store.close()


async def test_offline_engine_output_matches_the_golden_samples(engine_caller: ScriptedCaller) -> None:
    await engine_caller.next_turn()  # the greeting
    # Spoken over the greeting (barge-in: the interruption marker and INTERRUPTED), then typed turns that book.
    await engine_caller.say(hibari_voice("book a table for two"))
    spoken = await engine_caller.next_turn()
    assert spoken.interrupted
    assert spoken.user_text == "book a table for two"
    for text in ("tomorrow at eight pm please", "my name is alice smith", "yes"):
        await engine_caller.type_text(text)
        await engine_caller.next_turn()
    tools = [e["event"]["toolUse"]["toolName"] for e in engine_caller.all_events if "toolUse" in e["event"]]
    assert tools[-1] == "create_restaurant_booking"
    events = engine_caller.all_events
    _assert_golden(events)
    assert not flow_problems(events), flow_problems(events)
    expected = {"completion_start.json", "text_content_start.json", "text_output.json", "text_content_end.json",
                "audio_content_start.json", "audio_output.json", "audio_content_end.json", "usage_event.json",
                "tool_use_content_start.json", "tool_use.json", "tool_content_end.json", "completion_end.json"}
    assert _matched(events) == expected


# --- (d) the checker refuses what the documentation does not allow ------------------------------------

def _text_start() -> dict[str, Any]:
    return p.text_output_content_start(IDS, "ASSISTANT", "FINAL")


def _refused(event: dict[str, Any], *fragments: str) -> None:
    found = problems(event)
    assert found, f"accepted: {event}"
    for fragment in fragments:
        assert any(fragment in problem for problem in found), (fragment, found)
    with pytest.raises(ShapeError):
        check(event)


def _edit(event: dict[str, Any], path: tuple[str, ...], value: Any = None, *, delete: bool = False,
          rename: str | None = None) -> dict[str, Any]:
    edited = copy.deepcopy(event)
    ((_name, body),) = edited["event"].items()
    target = body
    for key in path[:-1]:
        target = target[key]
    if rename is not None:
        target[rename] = target.pop(path[-1])
    elif delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return edited


def test_the_checker_accepts_the_unedited_events() -> None:
    for event in _builder_events():
        check(event)


def test_the_checker_refuses_a_wrong_field_name() -> None:
    _refused(_edit(_text_start(), ("contentId",), rename="contentID"), "contentID: not a documented field",
             "contentId: missing")
    _refused(_edit(p.audio_output_content_start(IDS), ("audioOutputConfiguration", "sampleRateHertz"),
                   rename="sampleRate"), "sampleRate: not a documented field")
    _refused(_edit(p.completion_start(IDS), ("contentId",), "content-1"), "contentId: not a documented field")


def test_the_checker_refuses_a_wrong_type() -> None:
    usage = p.usage_event(IDS, delta={"input": {"speechTokens": 1, "textTokens": 1},
                                      "output": {"speechTokens": 1, "textTokens": 1}},
                          total={"input": {"speechTokens": 1, "textTokens": 1},
                                 "output": {"speechTokens": 1, "textTokens": 1}})
    _refused(_edit(usage, ("totalTokens",), "4"), "totalTokens: expected a number, got string")
    _refused(_edit(usage, ("details", "delta", "output", "speechTokens"), True), "expected a number, got boolean")
    _refused(_edit(p.audio_output_content_start(IDS), ("audioOutputConfiguration", "channelCount"), 1.0),
             "channelCount: expected 1")
    _refused(_edit(_text_start(), ("additionalModelFields",), {"generationStage": "FINAL"}),
             "expected a JSON string, got object")
    _refused(_edit(p.tool_use(IDS, "t", "u", {}), ("content",), {"a": 1}), "expected a string, got object")
    _refused(_edit(p.tool_use(IDS, "t", "u", {}), ("content",), "{not json"), "is not a JSON string")
    _refused(_edit(p.audio_output(IDS, PCM), ("content",), "%%%"), "not strict base64")
    _refused(_edit(p.audio_output(IDS, PCM), ("content",), base64.b64encode(b"\x01").decode()),
             "whole number of 16-bit samples")
    _refused(_edit(p.completion_start(IDS), ("promptName",), ""), "must not be empty")


def test_the_checker_refuses_a_missing_key() -> None:
    _refused(_edit(p.usage_event(IDS, delta={"input": {"speechTokens": 1, "textTokens": 1},
                                             "output": {"speechTokens": 1, "textTokens": 1}},
                                 total={"input": {"speechTokens": 1, "textTokens": 1},
                                        "output": {"speechTokens": 1, "textTokens": 1}}),
                   ("completionId",), delete=True), "completionId: missing")
    _refused(_edit(p.usage_event(IDS, delta={"input": {"speechTokens": 1, "textTokens": 1},
                                             "output": {"speechTokens": 1, "textTokens": 1}},
                                 total={"input": {"speechTokens": 1, "textTokens": 1},
                                        "output": {"speechTokens": 1, "textTokens": 1}}),
                   ("details", "total", "input"), delete=True), "total.input: missing")
    _refused(_edit(_text_start(), ("textOutputConfiguration",), delete=True), "textOutputConfiguration: missing")
    _refused(_edit(p.output_content_end(IDS, "TOOL", "TOOL_USE"), ("stopReason",), delete=True), "stopReason: missing")
    # the optional textOutput.role may be absent - but only that one
    check(_edit(p.text_output(IDS, "USER", "hi"), ("role",), delete=True))


def test_the_checker_refuses_a_wrong_enum() -> None:
    _refused(_edit(_text_start(), ("role",), "SYSTEM"), "'SYSTEM' is not one of")
    _refused(_edit(_text_start(), ("additionalModelFields",), json.dumps({"generationStage": "DRAFT"})),
             "'DRAFT' is not one of")
    _refused(_edit(p.text_output(IDS, "USER", "hi"), ("role",), "TOOL"), "'TOOL' is not one of")
    _refused(p.output_content_end(IDS, "AUDIO", "INTERRUPTED"), "'INTERRUPTED' is not one of")
    _refused(p.output_content_end(IDS, "TOOL", "END_TURN"), "expected 'TOOL_USE'")
    _refused(p.completion_end(IDS, "INTERRUPTED"), "expected 'END_TURN'")
    _refused(p.audio_output_content_start(IDS, rate=44_100), "44100 is not one of")
    _refused(_edit(p.output_content_end(IDS, "TEXT", "END_TURN"), ("type",), "VIDEO"), "'VIDEO' is not one of")
    _refused({"event": {"textOutputs": {}}}, "not a documented output event")
    _refused({"event": {"textOutput": {}, "audioOutput": {}}}, "not an {\"event\"")


def test_the_flow_check_refuses_crossed_identifiers() -> None:
    other = p.OutputIds("session-1", "prompt-1", "completion-1", "content-2")
    good = [p.completion_start(IDS), p.audio_output_content_start(IDS), p.audio_output(IDS, PCM),
            p.output_content_end(IDS, "AUDIO", "END_TURN"), p.completion_end(IDS)]
    assert flow_problems(good) == []
    stray = [*good[:2], p.audio_output(other, PCM), *good[3:]]
    assert any("not an open AUDIO block" in f for f in flow_problems(stray))
    wrong_kind = [*good[:2], p.text_output(IDS, "ASSISTANT", "x"), *good[2:]]
    assert any("not an open TEXT block" in f for f in flow_problems(wrong_kind))
    foreign = [*good[:4], p.usage_event(p.OutputIds("session-1", "prompt-1", "completion-9"),
                                        delta={"input": {"speechTokens": 0, "textTokens": 0},
                                               "output": {"speechTokens": 0, "textTokens": 0}},
                                        total={"input": {"speechTokens": 0, "textTokens": 0},
                                               "output": {"speechTokens": 0, "textTokens": 0}}), good[4]]
    assert any("is not the open completion" in f for f in flow_problems(foreign))
    unclosed = [good[0], good[1], good[4]]
    assert any("blocks still open" in f for f in flow_problems(unclosed))
