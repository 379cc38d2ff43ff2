"""The web app in a real browser against the real standalone stack.

A guest books a table by voice (Chromium's fake microphone plays a synthesised booking dialogue), sees
the live transcript and the booking card, while a staff page open at the same time receives the
booking through the events channel without reloading. A second test forces WebRTC's ICE to fail and
checks the call moves to the WebSocket transport and the conversation still works.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.support import STAFF_TOKEN, BrowserSession, Runtime

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(170)]

BOOKING_WAIT_MS = 80_000  # greeting + three guest turns + replies, in real time


def _tomorrow() -> str:
    # The restaurant time zone of the test runtime is UTC (the default).
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


def _open_staff_page(session: BrowserSession, runtime: Runtime, *, width: int = 1280, height: int = 860) -> Any:
    page = session.new_page(width=width, height=height)
    page.goto(f"{runtime.base_url}/#/staff")
    page.get_by_label("Staff token").fill(STAFF_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Bookings").wait_for()
    page.get_by_test_id("staff-date").fill(_tomorrow())
    page.locator('[data-testid="live-state"][data-state="connected"]').wait_for(timeout=15_000)
    return page


def _transcript(page: Any) -> list[tuple[str, str, str]]:
    return page.eval_on_selector_all(
        '[data-testid="transcript"] li[data-role]',
        "els => els.map(e => [e.dataset.role, e.dataset.final, e.querySelector('.text').textContent])",
    )


def _wait_for_booking(page: Any) -> str:
    card = page.get_by_test_id("booking-card")
    card.wait_for(timeout=BOOKING_WAIT_MS)
    booking_id = page.get_by_test_id("booking-id").inner_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9-]{4,40}", booking_id), booking_id
    text = card.inner_text()
    assert "Table booked" in text
    assert "Alice Smith" in text
    assert "19:00" in text
    assert re.search(r"Guests\s*4", text), text
    return booking_id


def _cancel_from_staff_page(staff: Any, booking_id: str, reason: str) -> None:
    summary_before = staff.locator(".summary").inner_text()
    assert "1 booking, 4 guests confirmed" in summary_before, summary_before
    staff.get_by_role("button", name=f"Cancel booking {booking_id}").click()
    confirm = staff.get_by_test_id("cancel-confirm")
    confirm.get_by_label("Reason (optional)").fill(reason)
    confirm.get_by_role("button", name="Cancel booking", exact=True).click()
    row = staff.locator(f'tr[data-booking-id="{booking_id}"][data-status="cancelled"]')
    row.wait_for(timeout=10_000)
    text = row.inner_text()
    assert "Cancelled" in text, text
    assert f"Reason: {reason}" in text, text
    assert row.get_by_role("button", name=re.compile("Cancel")).count() == 0
    assert confirm.count() == 0
    summary_after = staff.locator(".summary").inner_text()
    assert "0 bookings, 0 guests confirmed · 1 cancelled" in summary_after, summary_after


def test_guest_books_by_voice_and_staff_sees_it_live(
    stack: Runtime, launch_chromium: Any, dialogue_wavs: dict[str, Path], artifacts_dir: Path
) -> None:
    session: BrowserSession = launch_chromium(dialogue_wavs["direct"])
    staff = _open_staff_page(session, stack)
    staff.evaluate("window.__notReloaded = true")
    assert staff.get_by_test_id("bookings-table").get_by_text("Alice Smith").count() == 0

    guest = session.new_page()
    guest.goto(f"{stack.base_url}/")
    guest.get_by_role("button", name="Talk").click()
    connection = guest.get_by_test_id("connection")
    guest.locator('[data-testid="connection"][data-phase="connected"]').wait_for(timeout=15_000)
    assert connection.get_attribute("data-transport") == "webrtc"
    assert "Connected via WebRTC" in connection.inner_text()

    # The assistant greets first; its words show up in the transcript as it speaks.
    guest.locator('[data-testid="transcript"] li[data-role="ASSISTANT"]').first.wait_for(timeout=20_000)
    guest.wait_for_function(
        "() => Number(document.querySelector('[data-testid=assistant-level]').getAttribute('aria-valuenow')) > 0",
        timeout=15_000,
    )

    booking_id = _wait_for_booking(guest)
    lines = _transcript(guest)
    guest_lines = " ".join(text.lower() for role, final, text in lines if role == "USER" and final == "true")
    assert "alice smith" in guest_lines, lines
    assert any(role == "ASSISTANT" and "booked" in text.lower() for role, _, text in lines), lines
    assert re.search(r"Response time:\s*\d+ ms", guest.get_by_test_id("latency").inner_text())
    # That figure is the page's own (end of the guest's speech -> first assistant sound, webapp/src/voice/heard.ts),
    # reported after each reply: /metrics' caller-side histogram counted it.
    exposition = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    counted = [float(line.rpartition(" ")[2]) for line in exposition.splitlines()
               if line.startswith("voice_caller_response_seconds_count{") and 'transport="webrtc"' in line]
    assert counted, "no caller-side reply time reported over WebRTC"
    assert sum(counted) >= 1
    # The guest's own /conversations/<sessionId> subscription confirms lines as they are stored.
    guest.locator('[data-testid="transcript"] li[data-role="USER"][data-saved="true"]').first.wait_for(timeout=10_000)
    guest.screenshot(path=str(artifacts_dir / "webapp-guest-desktop.png"), full_page=True)

    # Staff: the row arrives through /restaurant-booking/* while the page stays loaded.
    row = staff.locator(f'tr[data-booking-id="{booking_id}"]')
    row.wait_for(timeout=10_000)
    assert "Alice Smith" in row.inner_text()
    assert "Confirmed" in row.inner_text()
    assert staff.evaluate("window.__notReloaded") is True
    # ... and the conversation's stored turns through /conversations/*.
    staff.locator('[data-testid="conversations"] li[data-session-id] .turns li').first.wait_for(timeout=10_000)
    assert "Alice Smith" in staff.get_by_test_id("conversations").inner_text()
    staff.screenshot(path=str(artifacts_dir / "webapp-staff-desktop.png"), full_page=True)

    guest.get_by_role("button", name="Hang up").click()
    guest.locator('[data-testid="connection"][data-phase="ended"]').wait_for(timeout=5_000)

    # Staff cancels the booking from the row: inline confirmation with a reason, DELETE, row updated.
    _cancel_from_staff_page(staff, booking_id, "Guest called to cancel")
    staff.screenshot(path=str(artifacts_dir / "webapp-staff-cancelled-desktop.png"), full_page=True)

    # Phone-sized screens: same pages, narrow viewport.
    guest.set_viewport_size({"width": 390, "height": 844})
    guest.screenshot(path=str(artifacts_dir / "webapp-guest-phone.png"), full_page=True)
    staff.set_viewport_size({"width": 390, "height": 844})
    staff.screenshot(path=str(artifacts_dir / "webapp-staff-phone.png"), full_page=True)

    assert session.console_errors == []


def test_call_falls_back_to_websocket_when_ice_cannot_connect(
    stack: Runtime, launch_chromium: Any, dialogue_wavs: dict[str, Path], artifacts_dir: Path
) -> None:
    session: BrowserSession = launch_chromium(dialogue_wavs["fallback"])
    guest = session.new_page()
    # Relay-only ICE with no TURN server configured: the browser has no candidate that can ever
    # connect, exactly like a network that blocks UDP to everything but a (missing) relay. The
    # connectivity check would see that and skip WebRTC (test_connectivity_browser.py); `precheck=off`
    # keeps this test on the path where WebRTC is tried and ICE gives up.
    guest.goto(f"{stack.base_url}/?relay=only&iceTimeoutMs=3000&precheck=off")
    guest.get_by_role("button", name="Talk").click()
    guest.locator('[data-testid="connection"][data-phase="connected"]').wait_for(timeout=20_000)
    assert guest.get_by_test_id("connection").get_attribute("data-transport") == "websocket"
    notice = guest.get_by_test_id("notice").inner_text()
    assert "WebSocket" in notice
    assert "connection check" not in notice, notice  # ICE gave up: not the connectivity check's shortcut

    # The microphone reaches the page's capture worklet (the meter moves when the guest speaks).
    guest.wait_for_function(
        "() => Number(document.querySelector('[data-testid=mic-level]').getAttribute('aria-valuenow')) > 0",
        timeout=30_000,
    )
    booking_id = _wait_for_booking(guest)
    lines = _transcript(guest)
    assert any(role == "USER" and final == "true" for role, final, _ in lines), lines
    guest.screenshot(path=str(artifacts_dir / "webapp-guest-websocket.png"), full_page=True)

    guest.get_by_role("button", name="Hang up").click()

    # The booking made over the fallback transport is real: the staff API lists it, and its stored
    # conversation opens from the row.
    staff = _open_staff_page(session, stack)
    row = staff.locator(f'tr[data-booking-id="{booking_id}"]')
    row.wait_for(timeout=10_000)
    row.get_by_role("button", name="Show").click()
    staff.locator('[data-testid="conversations"] li[data-session-id] .turns li').first.wait_for(timeout=10_000)
    assert "alice smith" in staff.get_by_test_id("conversations").inner_text().lower()
    assert session.console_errors == []


def test_missing_microphone_gets_a_clear_message_by_keyboard(
    stack: Runtime, launch_chromium: Any, artifacts_dir: Path
) -> None:
    session: BrowserSession = launch_chromium(None)  # a machine without any audio input device
    guest = session.new_page(width=390, height=844)
    guest.goto(f"{stack.base_url}/")
    talk = guest.get_by_role("button", name="Talk")
    talk.wait_for()
    for _ in range(10):  # keyboard only: tab to Talk and press Enter
        guest.keyboard.press("Tab")
        if guest.evaluate("document.activeElement && document.activeElement.textContent") == "Talk":
            break
    assert guest.evaluate("document.activeElement.textContent") == "Talk"
    guest.keyboard.press("Enter")
    alert = guest.get_by_role("alert")
    alert.wait_for(timeout=10_000)
    assert "No microphone was found" in alert.inner_text()
    assert guest.get_by_test_id("connection").get_attribute("data-phase") == "error"
    assert talk.is_enabled()  # the guest can try again once a microphone is plugged in
    guest.screenshot(path=str(artifacts_dir / "webapp-guest-no-microphone-phone.png"), full_page=True)
    assert session.console_errors == []
