"""The client address behind the ALB: the entry the load balancer appended, never one the client wrote.

The ALB appends the address it saw to ``X-Forwarded-For`` (AWS: "X-Forwarded-For: client-ip-address" and,
when the request already had one, ``<client's own>, <ALB's>``). These tests send forged headers through a
real Starlette app and check which address the limits see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from runtime.ratelimit import RateLimiter, address_key, client_address, client_key, forwarded_client
from runtime.settings import Settings, load_settings

PEER = "10.0.3.7"  # the ALB's private address, as the task sees the TCP connection


@asynccontextmanager
async def app_seen_from(settings: Settings, peer: str = PEER) -> AsyncIterator[httpx.AsyncClient]:
    limiter = RateLimiter(0.001, 3)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"address": client_address(request), "key": client_key(request),
                             "allowed": limiter.allow(client_key(request))})

    app = Starlette(routes=[Route("/whoami", whoami)])
    app.state.settings = settings
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def behind_alb(hops: int = 1) -> Settings:
    return load_settings(trust_proxy_headers=True, trusted_proxy_hops=hops)


async def seen(client: httpx.AsyncClient, headers: list[tuple[str, str]]) -> dict[str, object]:
    response = await client.get("/whoami", headers=headers)
    assert response.status_code == 200
    return dict(response.json())


async def test_behind_the_alb_the_last_entry_is_the_client_and_forged_hops_are_ignored() -> None:
    async with app_seen_from(behind_alb()) as client:
        assert (await seen(client, [("x-forwarded-for", "198.51.100.9")]))["address"] == "198.51.100.9"
        forged = await seen(client, [("x-forwarded-for", "1.2.3.4, 5.6.7.8, 198.51.100.9")])
        assert forged["address"] == "198.51.100.9"
        # A client that sends its own X-Forwarded-For line: the ALB appends to the request's header, and a
        # second header line is joined in order, so the ALB's entry is still the last one.
        split = await seen(client, [("x-forwarded-for", "203.0.113.1"), ("x-forwarded-for", "198.51.100.9")])
        assert split["address"] == "198.51.100.9"


async def test_rotating_forged_entries_buy_no_fresh_allowance() -> None:
    async with app_seen_from(behind_alb()) as client:
        allowed = [(await seen(client, [("x-forwarded-for", f"192.0.2.{n}, 198.51.100.9")]))["allowed"]
                   for n in range(6)]
    assert allowed == [True, True, True, False, False, False]  # burst 3, whatever the client wrote


async def test_two_trusted_hops_take_the_second_entry_from_the_right() -> None:
    async with app_seen_from(behind_alb(hops=2)) as client:
        # client-written, then what CloudFront saw, then CloudFront's edge as the ALB saw it
        result = await seen(client, [("x-forwarded-for", "1.2.3.4, 198.51.100.9, 130.176.0.1")])
        assert result["address"] == "198.51.100.9"
        # fewer entries than trusted hops: the request did not come through both proxies -> the TCP peer
        assert (await seen(client, [("x-forwarded-for", "198.51.100.9")]))["address"] == PEER


async def test_without_trust_the_header_is_ignored_entirely() -> None:
    async with app_seen_from(load_settings(trust_proxy_headers=False)) as client:
        assert (await seen(client, [("x-forwarded-for", "198.51.100.9")]))["address"] == PEER
        assert (await seen(client, []))["address"] == PEER


async def test_no_or_garbage_header_falls_back_to_the_peer() -> None:
    async with app_seen_from(behind_alb()) as client:
        assert (await seen(client, []))["address"] == PEER
        assert (await seen(client, [("x-forwarded-for", "1.2.3.4, not-an-address")]))["address"] == PEER
        assert (await seen(client, [("x-forwarded-for", " , ")]))["address"] == PEER


@pytest.mark.parametrize(("entry", "expected"), [
    ("198.51.100.9:51234", "198.51.100.9"),  # ALB with routing.http.xff_client_port.enabled
    ("[2001:db8::1]:51234", "2001:db8::1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),  # one spelling per address
    ("::ffff:198.51.100.9", "198.51.100.9"),  # IPv4-mapped IPv6 is the IPv4 client
])
def test_entries_are_normalised(entry: str, expected: str) -> None:
    assert forwarded_client([f"9.9.9.9, {entry}"], PEER, 1) == expected


def test_ipv6_clients_are_keyed_by_their_slash_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("198.51.100.9") == "198.51.100.9"
