"""What a browser gets from the deployed runtime, given the environment the platform writes.

The runtime's own ``GET /api/config`` handler is served with the settings parsed from each stack's
container environment (secrets filled in as Secrets Manager would), so a renamed variable on either side
shows up here as a guest who cannot reach TURN or the events API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pulumi_harness import TEST_SECRETS, Run, cognito_on
from starlette.applications import Starlette
from starlette.routing import Route
from test_platform_wiring import runtime_environment


def test_browser_config_uses_turn_relay_and_appsync(layout: Run) -> None:
    from runtime.api.config import get_config
    from runtime.media.turn import turn_credentials
    from runtime.settings import Settings

    env, secrets = runtime_environment(layout)
    values = {k.lower(): v for k, v in env.items()}
    values.update({"turn_secret": TEST_SECRETS["turnSecret"], "session_secret": TEST_SECRETS["sessionSecret"]})
    if cognito_on(layout):  # no shared staff token exists: the runtime takes the pool's tokens
        assert set(secrets) == {"TURN_SECRET", "SESSION_SECRET"}
    else:
        values["staff_token"] = TEST_SECRETS["staffToken"]
        assert set(secrets) == {"TURN_SECRET", "STAFF_TOKEN", "SESSION_SECRET"}
    app = Starlette(routes=[Route("/api/config", get_config)])
    app.state.settings = Settings(**values)

    async def fetch() -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=layout.outputs["url"]) as c:
            return (await c.get("/api/config")).json()

    body = asyncio.run(fetch())  # a sync test: the Pulumi harness manages its own loops

    assert body["iceTransportPolicy"] == "relay"  # the runtime's private IP is reachable only via coturn
    (turn,) = body["iceServers"]
    assert turn["urls"] == layout.outputs["turnUrls"]
    expires, user = turn["username"].split(":")
    assert turn_credentials(TEST_SECRETS["turnSecret"], user, 0, now=int(expires))[1] == turn["credential"]
    assert body["events"] == {"http": layout.outputs["eventsHttpEndpoint"],
                              "realtime": layout.outputs["eventsRealtimeEndpoint"], "auth": "authorization"}
    if cognito_on(layout):  # the web app signs staff in to exactly the pool and client the program created
        assert body["staffAuth"] == {"mode": "cognito", "region": "us-east-1",
                                     "userPoolId": layout.outputs["staffUserPoolId"],
                                     "clientId": layout.outputs["staffUserPoolClientId"], "endpoint": None,
                                     "group": "staff"}
    else:
        assert body["staffAuth"] == {"mode": "token"}
    assert body["engine"] == "nova-sonic"
