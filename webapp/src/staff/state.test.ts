import { describe, expect, it } from "vitest";

import { ApiFailure } from "../api";
import type { Booking, Turn } from "../protocol";
import { type StaffState, bookingSummary, cancelProblem, conversationList, initialStaff, staffReducer, todayIn } from "./state";

const booking = (id: string, hour: string, date = "2030-05-01"): Booking => ({
  booking_id: id,
  name: `Guest ${id}`,
  date,
  hour,
  num_guests: 2,
  status: "confirmed",
  created_at: `2030-04-01T10:00:0${id.length}Z`,
});

const turn = (session: string, seq: number, text: string): Turn => ({
  session_id: session,
  seq,
  role: seq % 2 ? "ASSISTANT" : "USER",
  text,
  created_at: "2030-04-01T10:00:00Z",
});

describe("staff reducer", () => {
  it("inserts a live booking of the shown day in time order and marks it fresh", () => {
    let state = staffReducer(initialStaff("2030-05-01"), {
      type: "bookingsLoaded",
      date: "2030-05-01",
      bookings: [booking("a", "20:00"), booking("b", "12:00")],
    });
    expect(state.bookings.map((b) => b.booking_id)).toEqual(["b", "a"]);
    state = staffReducer(state, {
      type: "event",
      now: 1,
      payload: { type: "booking.created", eventId: "booking:c:created", booking: booking("c", "19:00") },
    });
    expect(state.bookings.map((b) => b.booking_id)).toEqual(["b", "c", "a"]);
    expect(state.fresh).toEqual(["c"]);
  });

  it("replaces a booking on cancellation and ignores other days", () => {
    let state = staffReducer(initialStaff("2030-05-01"), {
      type: "bookingsLoaded",
      date: "2030-05-01",
      bookings: [booking("a", "20:00")],
    });
    state = staffReducer(state, {
      type: "event",
      now: 1,
      payload: { type: "booking.cancelled", eventId: "booking:a:cancelled", booking: { ...booking("a", "20:00"), status: "cancelled" } },
    });
    expect(state.bookings).toHaveLength(1);
    expect(state.bookings[0].status).toBe("cancelled");
    const other = staffReducer(state, {
      type: "event",
      now: 2,
      payload: { type: "booking.created", eventId: "booking:z:created", booking: booking("z", "12:00", "2030-05-02") },
    });
    expect(other).toBe(state);
  });

  it("drops a bookings response for a day that is no longer selected", () => {
    let state = staffReducer(initialStaff("2030-05-01"), { type: "date", date: "2030-05-02" });
    state = staffReducer(state, { type: "bookingsLoaded", date: "2030-05-01", bookings: [booking("a", "20:00")] });
    expect(state.bookings).toEqual([]);
  });

  it("builds conversations from session and turn events, ordered by seq, newest first", () => {
    let state = initialStaff("2030-05-01");
    state = staffReducer(state, {
      type: "event",
      now: 10,
      payload: { type: "session.started", eventId: "session:s1:started", session: { session_id: "s1", status: "active", created_at: "" } },
    });
    state = staffReducer(state, { type: "event", now: 11, payload: { type: "turn.added", eventId: "turn:s1:2", turn: turn("s1", 2, "second") } });
    state = staffReducer(state, { type: "event", now: 12, payload: { type: "turn.added", eventId: "turn:s2:1", turn: turn("s2", 1, "other") } });
    state = staffReducer(state, { type: "conversationLoaded", sessionId: "s1", turns: [turn("s1", 1, "first"), turn("s1", 2, "second")], now: 13 });
    const list = conversationList(state);
    expect(list.map((c) => c.sessionId)).toEqual(["s1", "s2"]);
    expect(list[0].turns.map((t) => t.text)).toEqual(["first", "second"]);
    expect(list[0].session?.status).toBe("active");
  });
});

describe("cancelling from the staff page", () => {
  const cancelled = (b: Booking, reason?: string): Booking => ({
    ...b,
    status: "cancelled",
    cancellation_reason: reason,
    cancelled_at: "2030-04-30T18:00:00Z",
  });
  const loaded = (): StaffState =>
    staffReducer(initialStaff("2030-05-01"), {
      type: "bookingsLoaded",
      date: "2030-05-01",
      bookings: [booking("a", "20:00"), { ...booking("b", "12:00"), num_guests: 5 }],
    });
  const cancelledEvent = (b: Booking) =>
    ({ type: "event", now: 5, payload: { type: "booking.cancelled", eventId: `booking:${b.booking_id}:cancelled`, booking: b } }) as const;

  it("applies the DELETE response: the row is cancelled with its reason and the summary drops it", () => {
    let state = loaded();
    expect(bookingSummary(state.bookings)).toEqual({ bookings: 2, guests: 7, cancelled: 0 });
    state = staffReducer(state, { type: "cancelOpen", bookingId: "a" });
    state = staffReducer(state, { type: "cancelSending", bookingId: "a" });
    expect(state.cancel).toEqual({ bookingId: "a", phase: "sending", problem: null });
    state = staffReducer(state, { type: "cancelDone", booking: cancelled(booking("a", "20:00"), "Guest called") });
    const row = state.bookings.find((b) => b.booking_id === "a");
    expect(row?.status).toBe("cancelled");
    expect(row?.cancellation_reason).toBe("Guest called");
    expect(state.cancel).toBeNull();
    expect(state.fresh).toEqual([]); // the desk's own action is not flashed as news
    expect(bookingSummary(state.bookings)).toEqual({ bookings: 1, guests: 5, cancelled: 1 });
  });

  it("treats the live event after the response as a no-op (same state object, nothing re-rendered)", () => {
    let state = staffReducer(loaded(), { type: "cancelSending", bookingId: "a" });
    const done = cancelled(booking("a", "20:00"), "Guest called");
    state = staffReducer(state, { type: "cancelDone", booking: done });
    const after = staffReducer(state, cancelledEvent({ ...done }));
    expect(after).toBe(state);
    expect(after.bookings).toHaveLength(2);
    expect(bookingSummary(after.bookings)).toEqual({ bookings: 1, guests: 5, cancelled: 1 });
  });

  it("handles the event arriving before the response: no highlight, and the late response changes nothing", () => {
    let state = staffReducer(loaded(), { type: "cancelOpen", bookingId: "a" });
    state = staffReducer(state, { type: "cancelSending", bookingId: "a" });
    const done = cancelled(booking("a", "20:00"));
    state = staffReducer(state, cancelledEvent(done));
    expect(state.bookings.find((b) => b.booking_id === "a")?.status).toBe("cancelled");
    expect(state.fresh).toEqual([]);
    expect(state.cancel).toBeNull();
    expect(staffReducer(state, { type: "cancelDone", booking: { ...done } })).toBe(state);
    // a failure report for a request the event already settled is dropped too
    expect(staffReducer(state, { type: "cancelFailed", bookingId: "a", problem: cancelProblem(new ApiFailure(0, "network", "x")) })).toBe(state);
  });

  it("closes an open confirmation when someone else cancels the booking, and highlights that change", () => {
    let state = staffReducer(loaded(), { type: "cancelOpen", bookingId: "a" });
    state = staffReducer(state, cancelledEvent(cancelled(booking("a", "20:00"), "cancelled by phone")));
    expect(state.cancel).toBeNull();
    expect(state.fresh).toEqual(["a"]);
  });

  it("never lets a late booking.created bring a cancelled row back", () => {
    let state = staffReducer(loaded(), { type: "cancelDone", booking: cancelled(booking("a", "20:00")) });
    const late = staffReducer(state, {
      type: "event",
      now: 6,
      payload: { type: "booking.created", eventId: "booking:a:created", booking: booking("a", "20:00") },
    });
    expect(late).toBe(state);
    state = late;
    expect(state.bookings.find((b) => b.booking_id === "a")?.status).toBe("cancelled");
  });

  it("keeps the confirmation open with the problem when the request fails, and allows a retry", () => {
    let state = staffReducer(loaded(), { type: "cancelOpen", bookingId: "b" });
    state = staffReducer(state, { type: "cancelSending", bookingId: "b" });
    expect(staffReducer(state, { type: "cancelClose" })).toBe(state); // cannot be dismissed mid-request
    const problem = cancelProblem(new ApiFailure(0, "network", "unreachable"));
    state = staffReducer(state, { type: "cancelFailed", bookingId: "b", problem });
    expect(state.cancel).toEqual({ bookingId: "b", phase: "failed", problem });
    expect(state.bookings.find((b) => b.booking_id === "b")?.status).toBe("confirmed");
    state = staffReducer(state, { type: "cancelSending", bookingId: "b" });
    expect(state.cancel?.problem).toBeNull();
    state = staffReducer(state, { type: "cancelFailed", bookingId: "b", problem });
    state = staffReducer(state, { type: "cancelClose" });
    expect(state.cancel).toBeNull();
  });

  it("words each failure for the desk", () => {
    const expired = cancelProblem(new ApiFailure(401, "unauthorized", "Sign in first"));
    expect(expired.signIn).toBe(true);
    expect(expired.message).toMatch(/sign in again/i);
    expect(cancelProblem(new ApiFailure(403, "forbidden", "guest token")).signIn).toBe(true);
    const offline = cancelProblem(new ApiFailure(0, "network", "unreachable"));
    expect(offline).toMatchObject({ signIn: false, retry: true });
    expect(offline.message).toMatch(/could not be reached.*try again/i);
    expect(cancelProblem(new ApiFailure(404, "booking_not_found", "No booking"))).toMatchObject({ retry: false });
    expect(cancelProblem(new ApiFailure(429, "rate_limited", "slow down")).message).toMatch(/wait a few seconds/i);
    expect(cancelProblem(new ApiFailure(422, "validation_error", "The reason is too long (at most 500 characters)."))).toEqual({
      message: "The reason is too long (at most 500 characters).",
      signIn: false,
      retry: true,
    });
    expect(cancelProblem(new ApiFailure(503, "unavailable", "Storage is unavailable.")).message).toMatch(/Storage is unavailable.*Try again/);
  });

  it("forgets an open confirmation when the day changes", () => {
    let state = staffReducer(loaded(), { type: "cancelOpen", bookingId: "a" });
    state = staffReducer(state, { type: "date", date: "2030-05-02" });
    expect(state.cancel).toBeNull();
  });
});

describe("today", () => {
  it("is the restaurant's calendar day, not the browser's", () => {
    // 23:30 UTC on 1 May is already 2 May in Auckland and still 1 May in Los Angeles.
    const instant = new Date(Date.UTC(2030, 4, 1, 23, 30));
    expect(todayIn("UTC", instant)).toBe("2030-05-01");
    expect(todayIn("Pacific/Auckland", instant)).toBe("2030-05-02");
    expect(todayIn("America/Los_Angeles", instant)).toBe("2030-05-01");
    expect(todayIn("America/Los_Angeles", new Date(Date.UTC(2030, 0, 1, 5)))).toBe("2029-12-31");
  });
});
