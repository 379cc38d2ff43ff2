import { describe, expect, it } from "vitest";

import type { Booking, Turn } from "../protocol";
import { conversationList, initialStaff, staffReducer } from "./state";

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
