"""Staff sign-in with Cognito in a real browser: the runtime with STAFF_AUTH=cognito, the strict local Cognito
stand-in (emulators/cognito.py: SRP verified for real), Debian Chromium.

One staff member's first day: a wrong password is refused with a clear message; the temporary password an
administrator gave leads to "choose your password"; the page then says who is signed in, sends the access
token (never the id token) to the staff API, and a booking a guest makes through the API arrives live. A
reload keeps the sign-in (sessionStorage) and renews a token that has expired (REFRESH_TOKEN_AUTH), nothing
lands in localStorage. Sign out returns to the form and
revokes the refresh token at Cognito, so the session cannot be renewed; the access token already issued stays
valid at the runtime until it expires (JWTs are verified locally; docs/staff-sign-in.md), and the test checks
exactly that, so a change in what sign-out guarantees shows up here. Signing in again with the new password
needs no challenge.

No WebRTC here, so unlike the other browser tests this one needs no network namespace: everything is on
127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, BrowserSession, Runtime, chromium_args, require_browser_stack, start_runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "maria"
TEMPORARY_PASSWORD = "Temporary-Pass-1!"
NEW_PASSWORD = "Maria-Own-Pass-2?"
MFA_USERNAME = "tomas"
SESSION_KEY = "concierge.staffSession"  # webapp/src/staff/session.ts STORAGE_KEY


def _require() -> None:
    """Fail (not skip) with the reason when a part this test drives is missing."""
    require_browser_stack()


@pytest.fixture(scope="module")
def cognito() -> Iterator[Any]:
    from emulators.cognito import LocalCognito

    _require()
    with LocalCognito() as local:
        yield local


@pytest.fixture(scope="module")
def pool(cognito: Any) -> Any:
    staff_pool = cognito.create_staff_pool()
    cognito.add_user(staff_pool, USERNAME, TEMPORARY_PASSWORD, temporary=True)
    return staff_pool


@pytest.fixture(scope="module")
def mfa_pool(cognito: Any) -> Any:
    """A pool with MFA required (prod's `staffMfa: required`), its user without an authenticator yet.

    The stand-in checks TOTP codes for real against the secret it gave the user (a wrong code is refused).
    """
    staff_pool = cognito.create_staff_pool(mfa="ON")
    cognito.add_user(staff_pool, MFA_USERNAME, NEW_PASSWORD)
    return staff_pool


def _serve(cognito: Any, pool: Any, data_dir: Path) -> Runtime:
    from runtime.settings import load_settings

    settings = load_settings(
        data_dir=data_dir,
        session_secret="browser-tests-session-secret-0123456789",
        speech_engine="local",
        store="sqlite",
        webapp_dir=ROOT / "webapp" / "dist",
        staff_auth="cognito",
        cognito_user_pool_id=pool.pool_id,
        cognito_client_id=pool.client_id,
        cognito_region=pool.region,
        cognito_endpoint_url=cognito.url,
    )
    return start_runtime(settings)


@pytest.fixture(scope="module")
def runtime(cognito: Any, pool: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    served = _serve(cognito, pool, tmp_path_factory.mktemp("staff-sign-in-data"))
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def mfa_runtime(cognito: Any, mfa_pool: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    served = _serve(cognito, mfa_pool, tmp_path_factory.mktemp("staff-mfa-data"))
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserSession]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(None), headless=True)
        try:
            yield BrowserSession(chromium, [])
        finally:
            chromium.close()


def _claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _http(method: str, url: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _stored_session(page: Any) -> dict[str, Any] | None:
    raw = page.evaluate(f"() => sessionStorage.getItem({SESSION_KEY!r})")
    return json.loads(raw) if raw else None


def _totp(secret: str, at: float | None = None) -> str:
    """The authenticator app's code (RFC 6238: SHA-1, 6 digits, 30 s), from the secret the page showed."""
    from cryptography.hazmat.primitives.hashes import SHA1
    from cryptography.hazmat.primitives.twofactor.totp import TOTP

    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    return TOTP(key, 6, SHA1(), 30, enforce_key_length=False).generate(int(at or time.time())).decode()


def _sign_in(page: Any, password: str, username: str = USERNAME) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def _wait_for_heading(page: Any, name: str) -> None:
    """Wait for the step's heading; on a timeout say what the page shows instead (the sign-in problem)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_role("heading", name=name).wait_for(timeout=10_000)
    except PlaywrightTimeout:
        shown = page.locator("main").first.inner_text() if page.locator("main").count() else page.content()
        pytest.fail(f"expected the {name!r} step; the page shows: {shown!r}")


def _refresh_refused(cognito: Any, pool: Any, refresh_token: str) -> str | None:
    """The Cognito error code when the refresh token is refused, None while it still works."""
    try:
        cognito.client().initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                       AuthParameters={"REFRESH_TOKEN": refresh_token})
    except cognito.client().exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def test_staff_member_signs_in_sees_a_booking_live_and_signs_out(
    runtime: Runtime, cognito: Any, pool: Any, browser: BrowserSession
) -> None:
    browser.console_errors.clear()
    page = browser.new_page()
    bookings_requests: list[Any] = []
    page.on("request", lambda r: bookings_requests.append(r) if "/api/bookings" in r.url else None)
    page.goto(f"{runtime.base_url}/#/staff")

    # The Cognito form, not the token box.
    page.get_by_role("heading", name="Staff sign in").wait_for()
    assert page.get_by_label("Staff token").count() == 0

    # A wrong password: a clear message, still on the form, nothing stored.
    _sign_in(page, "Wrong-Password-9!")
    problem = page.get_by_test_id("signin-problem")
    problem.wait_for(timeout=10_000)
    assert problem.inner_text() == "Incorrect username or password."
    assert _stored_session(page) is None

    # First sign-in with the temporary password: choose a new one (NEW_PASSWORD_REQUIRED).
    _sign_in(page, TEMPORARY_PASSWORD)
    _wait_for_heading(page, "Choose your password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()

    _wait_for_heading(page, "Bookings")
    assert page.get_by_test_id("signed-in-as").inner_text() == f"Signed in as {USERNAME}"
    page.locator('[data-testid="live-state"][data-state="connected"]').wait_for(timeout=15_000)

    # Tokens: sessionStorage only; the staff API got the ACCESS token as a bearer token.
    stored = _stored_session(page)
    assert stored is not None
    access, refresh = stored["tokens"]["accessToken"], stored["tokens"]["refreshToken"]
    claims = _claims(access)
    assert claims["token_use"] == "access"
    assert claims["client_id"] == pool.client_id
    assert claims["username"] == USERNAME
    assert page.evaluate("() => Object.keys(localStorage)") == []
    assert bookings_requests, "the staff page did not load the day's bookings"
    assert bookings_requests[-1].all_headers()["authorization"] == f"Bearer {access}"

    # A guest books through the API; the booking arrives live in the staff view.
    future = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    page.get_by_test_id("staff-date").fill(future)
    page.locator(".summary").filter(has_text=re.compile(r"^0 bookings")).wait_for(timeout=10_000)
    status, booking = _http("POST", f"{runtime.base_url}/api/bookings",
                            body={"name": "Ada Lovelace", "date": future, "hour": "19:00", "num_guests": 2})
    assert status == 201, booking
    row = page.locator(f'tr[data-booking-id="{booking["booking_id"]}"]')
    row.wait_for(timeout=10_000)
    assert "Ada Lovelace" in row.inner_text()

    # A reload keeps the sign-in (sessionStorage survives it; it would not survive closing the tab). The
    # stored clock offset is pushed two hours ahead first, so the restored access token looks expired: the
    # page renews it with REFRESH_TOKEN_AUTH straight away, and the staff member notices nothing.
    page.evaluate(
        """key => { const s = JSON.parse(sessionStorage.getItem(key)); s.skew = 2 * 3600 * 1000;
                    sessionStorage.setItem(key, JSON.stringify(s)); }""",
        SESSION_KEY,
    )
    page.reload()
    page.get_by_test_id("signed-in-as").wait_for(timeout=10_000)
    page.wait_for_function(
        "([key, old]) => JSON.parse(sessionStorage.getItem(key) || 'null')?.tokens.accessToken !== old",
        arg=[SESSION_KEY, access], timeout=10_000,
    )
    renewed = _stored_session(page)
    assert renewed is not None
    assert renewed["tokens"]["refreshToken"] == refresh
    assert abs(renewed["skew"]) < 60_000  # measured again from the new token
    assert _claims(renewed["tokens"]["accessToken"])["token_use"] == "access"
    page.locator('[data-testid="live-state"][data-state="connected"]').wait_for(timeout=15_000)
    page.get_by_test_id("staff-date").fill(future)
    page.locator(f'tr[data-booking-id="{booking["booking_id"]}"]').wait_for(timeout=10_000)
    assert bookings_requests[-1].all_headers()["authorization"] == f"Bearer {renewed['tokens']['accessToken']}"

    # Sign out: back to the form, nothing stored, the refresh token revoked at Cognito.
    assert _refresh_refused(cognito, pool, refresh) is None  # it worked until now
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Staff sign in").wait_for(timeout=10_000)
    assert _stored_session(page) is None
    deadline = time.monotonic() + 10
    while (refused := _refresh_refused(cognito, pool, refresh)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused == "NotAuthorizedException"
    # What sign-out does NOT do: the access token already issued is a self-contained JWT, still accepted
    # until it expires (at most 60 minutes).
    status, body = _http("GET", f"{runtime.base_url}/api/bookings?date={future}", token=access)
    assert status == 200, body
    assert claims["exp"] - claims["iat"] <= 3600

    # The new password works without a challenge.
    _sign_in(page, NEW_PASSWORD)
    page.get_by_test_id("signed-in-as").wait_for(timeout=10_000)

    # Chromium logs the refused sign-in's HTTP 400 as a console error; anything else is a defect.
    unexpected = [e for e in browser.console_errors if "status of 400" not in e]
    assert unexpected == []


def test_mfa_required_sets_up_an_authenticator_then_asks_for_its_code(
    mfa_runtime: Runtime, browser: BrowserSession
) -> None:
    browser.console_errors.clear()
    page = browser.new_page()
    page.goto(f"{mfa_runtime.base_url}/#/staff")
    page.get_by_role("heading", name="Staff sign in").wait_for()

    # MFA_SETUP: the page shows the secret for an authenticator app, and checks a code from it.
    _sign_in(page, NEW_PASSWORD, MFA_USERNAME)
    _wait_for_heading(page, "Set up two-step sign-in")
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    assert page.get_by_role("link", name="Open in an authenticator app").get_attribute("href").startswith(
        f"otpauth://totp/Nova%20Bistro%3A{MFA_USERNAME}?secret={secret}")
    wrong = f"{(int(_totp(secret)) + 500_000) % 1_000_000:06d}"
    page.get_by_label("Code", exact=True).fill(wrong)
    page.get_by_role("button", name="Verify").click()
    problem = page.get_by_test_id("signin-problem")
    problem.wait_for(timeout=10_000)
    assert "That code is not right" in problem.inner_text()
    page.get_by_label("Code", exact=True).fill(_totp(secret))
    page.get_by_role("button", name="Verify").click()
    _wait_for_heading(page, "Bookings")
    assert page.get_by_test_id("signed-in-as").inner_text() == f"Signed in as {MFA_USERNAME}"

    # The next sign-in asks for the code (SOFTWARE_TOKEN_MFA).
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Staff sign in").wait_for(timeout=10_000)
    _sign_in(page, NEW_PASSWORD, MFA_USERNAME)
    _wait_for_heading(page, "Enter your code")
    page.get_by_label("Code", exact=True).fill(_totp(secret))
    page.get_by_role("button", name="Verify").click()
    _wait_for_heading(page, "Bookings")
    assert page.get_by_test_id("signed-in-as").inner_text() == f"Signed in as {MFA_USERNAME}"
    unexpected = [e for e in browser.console_errors if "status of 400" not in e]
    assert unexpected == []
