"""No input reaches a 5xx: deep JSON, malformed Origin headers, oversized offers, and the 405 Allow header.

In-process (Starlette's TestClient) with the real app; the WebSocket tests use the echo session factory,
so no speech model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdp_samples import browser_offer, offer_with_audio_sections
from starlette.testclient import TestClient, WebSocketDenialResponse

from runtime.app import create_app
from runtime.http_body import MAX_JSON_DEPTH, json_depth
from runtime.media.routes import MediaHub
from runtime.media.webrtc import MAX_MEDIA_SECTIONS, MAX_SDP_BYTES
from runtime.services import Overrides
from runtime.settings import Settings
from tools.echo import EchoSessionFactory

DEEP = b"[" * 30_000 + b"]" * 30_000  # the body: 60 KB, under the 64 KB body limit


@pytest.fixture
def echo_factory() -> EchoSessionFactory:
    return EchoSessionFactory()


@pytest.fixture
def client(tmp_path: Path, echo_factory: EchoSessionFactory) -> Iterator[TestClient]:
    webapp = tmp_path / "webapp"  # a built web app at /, as `serve` has: it must not swallow API 405s
    webapp.mkdir()
    (webapp / "index.html").write_text("<!doctype html><title>guest page</title>")
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1,
                        webapp_dir=webapp)
    app = create_app(settings, Overrides(media=MediaHub(session_factory=echo_factory)))
    with TestClient(app, base_url="http://concierge.test", raise_server_exceptions=False) as client:
        yield client


def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_depth_is_counted_outside_strings_only() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 5 + b"]" * 5) == 5


@pytest.mark.parametrize("body", [DEEP, b'{"name": ' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}",
                                  b'{"a": {"b": ' * 500 + b"1" + b"}" * 1000])
def test_deeply_nested_json_is_a_400_on_every_json_route(client: TestClient, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    _error(client.post("/api/bookings", content=body, headers=headers), 400, "invalid_json")
    _error(client.request("DELETE", "/api/bookings/BK-7QX2M4KD9A", content=body, headers=headers), 400, "invalid_json")
    _error(client.post("/api/webrtc/offer", content=body, headers=headers), 400, "bad_request")
    assert client.get("/healthz").status_code == 200


def test_nesting_within_the_bound_still_parses(client: TestClient) -> None:
    nested = b'{"reason": "x", "extra": ' + b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2) + b"}"
    response = client.request("DELETE", "/api/bookings/BK-7QX2M4KD9A", content=nested,
                              headers={"content-type": "application/json"})
    _error(response, 404)  # parsed, then: no such booking


@pytest.mark.parametrize("origin", ["http://h:99999", "http://[::1", "http://concierge.test:0x50", "http://[zz]:80",
                                    "https://concierge.test:-1", "http://%ff"])
def test_malformed_origins_are_refused_cleanly(client: TestClient, origin: str,
                                               echo_factory: EchoSessionFactory) -> None:
    for path in ("/ws/audio", "/ws/probe"):
        with pytest.raises(WebSocketDenialResponse) as denied:  # noqa: SIM117 - the denial comes on entry
            with client.websocket_connect(f"ws://concierge.test{path}", headers={"origin": origin}):
                pass
        assert denied.value.status_code == 403
        assert denied.value.json()["error"]["code"] == "origin_not_allowed"
    assert not echo_factory.active
    assert not echo_factory.ended
    assert client.get("/healthz").status_code == 200


def test_a_malformed_host_header_does_not_break_the_origin_check(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:  # noqa: SIM117
        with client.websocket_connect("ws://concierge.test/ws/audio",
                                      headers={"origin": "http://concierge.test", "host": "[::1"}):
            pass
    assert denied.value.status_code == 403


def test_offers_with_too_many_media_sections_are_refused(client: TestClient, echo_factory: EchoSessionFactory) -> None:
    many = offer_with_audio_sections(40)
    assert len(many.encode()) < MAX_SDP_BYTES
    error = _error(client.post("/api/webrtc/offer", json={"sdp": many, "type": "offer"}), 400,
                   "too_many_media_sections")
    assert f"at most {MAX_MEDIA_SECTIONS}" in error["message"]
    # 250 bare m-lines fit in 9 KB: refused by their count, before aiortc parses them.
    compact = browser_offer() + "".join(f"m=audio {9 + i} RTP/AVP 0\r\na=mid:x{i}\r\n" for i in range(250))
    assert len(compact) < MAX_SDP_BYTES
    _error(client.post("/api/webrtc/offer", json={"sdp": compact, "type": "offer"}), 400, "too_many_media_sections")
    # The offer was 29 KB: over the size cap as well.
    padded = compact + "a=x-padding:" + "x" * (29_000 - len(compact)) + "\r\n"
    _error(client.post("/api/webrtc/offer", json={"sdp": padded, "type": "offer"}), 413, "payload_too_large")
    assert not echo_factory.active
    assert not echo_factory.ended


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    response = client.put("/api/bookings", json={})
    _error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}
    response = client.post("/api/bookings/BK-7QX2M4KD9A", json={})
    _error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "DELETE"}
    for method in ("OPTIONS", "GET", "PUT"):  # a POST-only route: not the static files' "GET, HEAD"
        response = client.request(method, "/api/webrtc/offer")
        _error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"
    assert "guest page" in client.get("/").text  # the web app still serves what no route knows
    assert client.get("/no/such/page").status_code == 404
    # The merged routes still serve every method.
    _error(client.get("/api/bookings"), 401)
    _error(client.get("/api/bookings/BK-7QX2M4KD9A"), 404)
    _error(client.post("/api/bookings", json={}), 422)


def test_every_response_object_of_the_openapi_document_is_well_formed(client: TestClient) -> None:
    # An unquoted comma in a docstring's YAML flow mapping ({description: ready, or not}) turns the rest into
    # a key: an OpenAPI Response Object may only have these fields (OpenAPI 3.1, "Response Object").
    allowed = {"description", "headers", "content", "links"}
    document = client.get("/openapi.json").json()
    malformed = {(path, method, status)
                 for path, operations in document["paths"].items()
                 for method, operation in operations.items()
                 for status, response in operation.get("responses", {}).items()
                 if set(response) - allowed or not isinstance(response.get("description"), str)}
    assert not malformed, sorted(malformed)
    assert len(document["paths"]) >= 10
