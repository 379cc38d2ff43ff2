"""Nova Sonic output events checked against golden samples transcribed from the AWS documentation.

Why: the emulator, the offline engine and the client's builders were all written from the same reading of
the docs, and the emulator used to build its output with the client's builders - so a wrong field passed
every test. The golden files (``tests/speech/golden/*.json``, one per documented output event, each with the
public page it came from) are the independent reference; docs/nova-sonic.md says how to add one.

Hand-written rather than JSON Schema (``jsonschema`` is not a dependency): the notation stays a
transcription of the documented sample itself, readable beside the page, with the doc's own ``A | B``
alternatives and JSON-in-a-string fields. Notation of a golden ``event`` value:

- an object: exactly these keys, every one required; a key ending in ``?`` is optional (sent by the
  service but missing from the documented sample - the golden file's notes say where it was seen);
- ``"<id>"``: a non-empty string (the doc's ``"string", // unique identifier``);
- ``"<string>"``: any string; ``"<number>"``: a JSON number, not a boolean (the doc's ``number``);
- ``"<json>"``: a string holding JSON (the doc's ``"json"``);
- ``"<base64>"``: a string of strict base64 decoding to whole 16-bit samples (``base64EncodedAudioData``);
- ``{"oneOf": [...]}``: one of these values (the doc's ``"A" | "B"``);
- ``{"jsonString": shape}``: a string holding JSON that matches ``shape`` (``additionalModelFields``);
- anything else: this exact value, of this exact JSON type (``16`` is not ``16.0`` nor ``"16"``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
_PLACEHOLDERS = ("<id>", "<string>", "<number>", "<json>", "<base64>")


@dataclass(frozen=True)
class Golden:
    file: str
    title: str
    source: str
    name: str  # the event name, e.g. "contentStart"
    match: dict[str, Any]  # discriminating body fields, e.g. {"type": "TEXT"}
    body: Any  # the shape of the event body


@cache
def goldens() -> tuple[Golden, ...]:
    out: list[Golden] = []
    for path in sorted(GOLDEN_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        ((name, body),) = doc["event"].items()
        out.append(Golden(path.name, doc["title"], doc["source"], name, doc.get("match", {}), body))
    return tuple(out)


def golden_for(event: Any) -> Golden:
    """The golden sample an event must match: by event name, then by its discriminating fields (``type``)."""
    if not isinstance(event, dict) or set(event) != {"event"} or not isinstance(event["event"], dict) \
            or len(event["event"]) != 1:
        raise ShapeError(["$: not an {\"event\": {name: body}} object"])
    ((name, body),) = event["event"].items()
    candidates = [g for g in goldens() if g.name == name]
    if not candidates:
        raise ShapeError([f"$.event: {name!r} is not a documented output event"])
    if not isinstance(body, dict):
        raise ShapeError([f"$.event.{name}: body is not an object"])
    for golden in candidates:
        if all(body.get(key) == value for key, value in golden.match.items()):
            return golden
    kinds = sorted({v for g in candidates for v in g.match.values()})
    raise ShapeError([f"$.event.{name}.type: {body.get('type')!r} is not one of {kinds}"])


class ShapeError(AssertionError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def problems(event: Any) -> list[str]:
    """Every way ``event`` departs from its golden sample (empty: it matches)."""
    try:
        golden = golden_for(event)
    except ShapeError as error:
        return error.problems
    found: list[str] = []
    _compare(event["event"][golden.name], golden.body, f"$.event.{golden.name}", found)
    return [f"{p} (golden {golden.file})" for p in found]


def check(event: Any) -> None:
    """Raise ShapeError listing every departure from the golden sample."""
    found = problems(event)
    if found:
        raise ShapeError(found)


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _same_literal(value: Any, expected: Any) -> bool:
    # 1 == True and 16 == 16.0 in Python; JSON types must match exactly.
    return type(value) is type(expected) and value == expected


def _compare(value: Any, shape: Any, path: str, found: list[str]) -> None:
    if isinstance(shape, dict) and set(shape) == {"oneOf"}:
        if not any(_same_literal(value, option) for option in shape["oneOf"]):
            found.append(f"{path}: {value!r} is not one of {shape['oneOf']}")
        return
    if isinstance(shape, dict) and set(shape) == {"jsonString"}:
        if not isinstance(value, str):
            found.append(f"{path}: expected a JSON string, got {_type(value)}")
            return
        try:
            inner = json.loads(value)
        except ValueError:
            found.append(f"{path}: {value!r} is not JSON")
            return
        _compare(inner, shape["jsonString"], f"{path}<json>", found)
        return
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            found.append(f"{path}: expected an object, got {_type(value)}")
            return
        keys = {key.removesuffix("?"): key.endswith("?") for key in shape}
        for key, optional in keys.items():
            if key not in value:
                if not optional:
                    found.append(f"{path}.{key}: missing")
                continue
            _compare(value[key], shape[key + "?" if optional else key], f"{path}.{key}", found)
        for key in value:
            if key not in keys:
                found.append(f"{path}.{key}: not a documented field")
        return
    if shape in _PLACEHOLDERS:
        _placeholder(value, shape, path, found)
        return
    if not _same_literal(value, shape):
        found.append(f"{path}: expected {shape!r}, got {value!r}")


def _placeholder(value: Any, shape: str, path: str, found: list[str]) -> None:
    if shape == "<number>":
        if _type(value) != "number":
            found.append(f"{path}: expected a number, got {_type(value)}")
        return
    if not isinstance(value, str):
        found.append(f"{path}: expected a string, got {_type(value)}")
        return
    if shape == "<id>" and not value:
        found.append(f"{path}: an identifier must not be empty")
    elif shape == "<json>":
        try:
            json.loads(value)
        except ValueError:
            found.append(f"{path}: {value[:40]!r} is not a JSON string")
    elif shape == "<base64>":
        try:
            pcm = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            found.append(f"{path}: not strict base64")
            return
        if len(pcm) % 2:
            found.append(f"{path}: {len(pcm)} bytes is not a whole number of 16-bit samples")


# --- across events ---------------------------------------------------------------------------------

_CONTENT_KIND = {"textOutput": "TEXT", "audioOutput": "AUDIO", "toolUse": "TOOL"}


def flow_problems(events: list[dict[str, Any]]) -> list[str]:
    """What the page says of the identifiers across events: one sessionId and promptName per stream; every
    event of a completion carries its completionId; a content event belongs to an open block of its type
    (audio chunks "sharing the same contentId"); contentEnd closes a block of the same type."""
    found: list[str] = []
    session: tuple[Any, Any] | None = None
    completion: str | None = None
    open_blocks: dict[str, str] = {}
    for index, event in enumerate(events):
        ((name, body),) = event["event"].items()
        where = f"event {index} ({name})"
        ids = (body.get("sessionId"), body.get("promptName"))
        if session is None:
            session = ids
        elif ids != session:
            found.append(f"{where}: sessionId/promptName {ids} differ from {session}")
        if name == "completionStart":
            if completion is not None:
                found.append(f"{where}: completion {completion} is still open")
            completion = body.get("completionId")
            continue
        if completion is not None and body.get("completionId") != completion:
            found.append(f"{where}: completionId {body.get('completionId')} is not the open completion {completion}")
        if name == "completionEnd":
            completion = None
            if open_blocks:
                found.append(f"{where}: blocks still open: {sorted(open_blocks)}")
            continue
        content_id = body.get("contentId")
        if name == "contentStart":
            if content_id in open_blocks:
                found.append(f"{where}: contentId {content_id} is already open")
            open_blocks[str(content_id)] = str(body.get("type"))
        elif name == "contentEnd":
            kind = open_blocks.pop(str(content_id), None)
            if kind != body.get("type"):
                found.append(f"{where}: closes {content_id} of type {kind} as {body.get('type')}")
        elif name in _CONTENT_KIND and open_blocks.get(str(content_id)) != _CONTENT_KIND[name]:
            found.append(f"{where}: contentId {content_id} is not an open {_CONTENT_KIND[name]} block")
    return found
