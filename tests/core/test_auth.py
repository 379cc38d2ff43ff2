"""The one credential rule set used by the REST API, the events gateway and the cloud authorizer."""

from __future__ import annotations

import pytest

from runtime.auth import (
    Principal,
    authenticate,
    may_publish,
    may_subscribe,
    mint_session_token,
    verify_session_token,
)

SECRET = "s3cret-for-tests"
SID = "3f2b6c1e-aaaa-bbbb-cccc-123456789abc"


def test_guest_token_opens_only_its_session() -> None:
    token = mint_session_token(SECRET, SID, 60, now=1000)
    assert verify_session_token(SECRET, token, now=1001) == SID
    principal = authenticate(f"Bearer {token}", staff_token="staff", session_secret=SECRET, now=1001)
    assert principal == Principal("guest", SID)
    assert principal.may_read_session(SID)
    assert not principal.may_read_session("3f2b6c1e-aaaa-bbbb-cccc-123456789abd")


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),         # forged MAC
    lambda t: t.replace(SID, "3f2b6c1e-aaaa-bbbb-cccc-000000000000"),  # other session, same MAC
    lambda t: t.replace(".", "", 1),                             # malformed
    lambda t: "v2" + t[2:],                                      # unknown version
    lambda t: "",
])
def test_tampered_tokens_are_refused(tamper) -> None:
    token = mint_session_token(SECRET, SID, 60, now=1000)
    assert verify_session_token(SECRET, tamper(token), now=1001) is None


def test_expired_and_wrong_secret_tokens_are_refused() -> None:
    token = mint_session_token(SECRET, SID, 60, now=1000)
    assert verify_session_token(SECRET, token, now=1061) is None
    assert verify_session_token("other-secret", token, now=1001) is None


def test_staff_token_and_unknown_credentials() -> None:
    assert authenticate("Bearer staff-token", staff_token="staff-token", session_secret=SECRET) == Principal("staff")
    assert authenticate("staff-token", staff_token="staff-token", session_secret=SECRET) == Principal("staff")
    assert authenticate("Bearer nope", staff_token="staff-token", session_secret=SECRET) is None
    assert authenticate(None, staff_token="staff-token", session_secret=SECRET) is None
    # no staff token configured: an empty credential must never match it
    assert authenticate("Bearer ", staff_token=None, session_secret=SECRET) is None


def test_invalid_session_ids_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="invalid session id"):
        mint_session_token(SECRET, "../../etc", 60)


@pytest.mark.parametrize(("principal", "channel", "allowed"), [
    (Principal("guest", SID), f"/conversations/{SID}", True),
    (Principal("guest", SID), f"/conversations/{SID}x", False),
    (Principal("guest", SID), "/conversations/*", False),
    (Principal("guest", SID), f"/conversations/{SID}/more", False),
    (Principal("guest", SID), "/restaurant-booking/*", False),
    (Principal("guest", SID), "/restaurant-booking/BK-123", False),
    (Principal("staff"), "/restaurant-booking/*", True),
    (Principal("staff"), "/conversations/*", True),
    (None, f"/conversations/{SID}", False),
])
def test_subscription_rules(principal, channel, allowed) -> None:
    assert may_subscribe(principal, channel) is allowed


def test_browsers_never_publish() -> None:
    assert not may_publish(Principal("staff"), "/restaurant-booking/BK-1")
    assert not may_publish(Principal("guest", SID), f"/conversations/{SID}")
