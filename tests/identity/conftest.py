"""Fixtures for staff identity: one strict local Cognito per test session and real tokens from it.

Tokens are obtained with pycognito's ``AWSSRP`` (an independent client implementation of Cognito's SRP), so the
stand-in's server side is checked against a client it did not write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pycognito.aws_srp import AWSSRP

from emulators.cognito import LocalCognito, StaffPool

PASSWORD = "Correct-Horse-9!"


@dataclass(frozen=True)
class Tokens:
    access: str
    id: str
    refresh: str


def idp(cognito: LocalCognito) -> Any:
    """The stand-in's boto3 client (sign-in calls are public: the stand-in, like Cognito, needs no keys)."""
    return cognito.client()


def sign_in(cognito: LocalCognito, pool: StaffPool, username: str, password: str = PASSWORD,
            client_id: str | None = None) -> Tokens:
    result = AWSSRP(username, password, pool.pool_id, client_id or pool.client_id,
                    client=idp(cognito)).authenticate_user()["AuthenticationResult"]
    return Tokens(result["AccessToken"], result["IdToken"], result["RefreshToken"])


@dataclass(frozen=True)
class Identities:
    """The staff pool, a second app client of it, another pool, and signed-in users of each."""

    cognito: LocalCognito
    pool: StaffPool
    other_pool: StaffPool
    other_client_id: str
    alice: Tokens  # staff
    bob: Tokens  # signed in, not in the staff group
    alice_other_client: Tokens  # staff, but through another app client of the same pool
    carol_other_pool: Tokens  # staff of another pool


@pytest.fixture(scope="session")
def local_cognito() -> Iterator[LocalCognito]:
    with LocalCognito() as cognito:
        yield cognito


@pytest.fixture(scope="session")
def identities(local_cognito: LocalCognito) -> Identities:
    pool = local_cognito.create_staff_pool()
    local_cognito.add_user(pool, "alice", PASSWORD)
    local_cognito.add_user(pool, "bob", PASSWORD, groups=())
    other_client_id = local_cognito.client().create_user_pool_client(
        UserPoolId=pool.pool_id, ClientName="another-app", GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]
    other_pool = local_cognito.create_staff_pool()
    local_cognito.add_user(other_pool, "carol", PASSWORD)
    return Identities(
        cognito=local_cognito, pool=pool, other_pool=other_pool, other_client_id=other_client_id,
        alice=sign_in(local_cognito, pool, "alice"), bob=sign_in(local_cognito, pool, "bob"),
        alice_other_client=sign_in(local_cognito, pool, "alice", client_id=other_client_id),
        carol_other_pool=sign_in(local_cognito, other_pool, "carol"))
