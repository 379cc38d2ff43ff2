// What the staff page shows: the chosen day's bookings and the conversations seen so far, kept up to
// date by events. A pure reducer so "the booking appears without reloading" is unit-testable.

import { ApiFailure } from "../api";
import type { Booking, EventPayload, SessionInfo, Turn } from "../protocol";

export interface ConversationView {
  sessionId: string;
  session: SessionInfo | null;
  turns: Turn[];
  /** when this conversation last changed (ms epoch), for ordering the list */
  touched: number;
}

/** What went wrong with a cancellation, worded for the person at the front desk. */
export interface CancelProblem {
  message: string;
  /** the staff token was refused: offer "Sign in again" */
  signIn: boolean;
  /** trying again may work (network, rate limit, server trouble, a reason to shorten) */
  retry: boolean;
}

/** The one booking whose inline "cancel?" confirmation is open. */
export interface CancelState {
  bookingId: string;
  phase: "confirm" | "sending" | "failed";
  problem: CancelProblem | null;
}

export interface StaffState {
  date: string;
  bookings: Booking[];
  /** booking ids that arrived live, highlighted in the table */
  fresh: string[];
  conversations: Record<string, ConversationView>;
  cancel: CancelState | null;
}

export type StaffAction =
  | { type: "date"; date: string }
  | { type: "bookingsLoaded"; date: string; bookings: Booking[] }
  | { type: "conversationLoaded"; sessionId: string; turns: Turn[]; now: number }
  | { type: "event"; payload: EventPayload; now: number }
  | { type: "cancelOpen"; bookingId: string }
  | { type: "cancelClose" }
  | { type: "cancelSending"; bookingId: string }
  | { type: "cancelFailed"; bookingId: string; problem: CancelProblem }
  | { type: "cancelDone"; booking: Booking };

export function initialStaff(date: string): StaffState {
  return { date, bookings: [], fresh: [], conversations: {}, cancel: null };
}

/** The fields a row shows: two copies equal here render the same row. */
function sameBooking(a: Booking, b: Booking): boolean {
  return (
    a.status === b.status &&
    a.name === b.name &&
    a.hour === b.hour &&
    a.num_guests === b.num_guests &&
    a.session_id === b.session_id &&
    a.cancellation_reason === b.cancellation_reason &&
    a.cancelled_at === b.cancelled_at
  );
}

/**
 * Put a booking seen in an event or a cancel response into the table. The same cancellation usually
 * arrives twice (the DELETE response, then booking.cancelled with a different path than the events
 * client's eventId de-duplication can see), so an identical copy returns the state unchanged: no
 * re-render, no second highlight. A cancellation is final, so a late "confirmed" copy (a delayed
 * booking.created) never brings a cancelled row back.
 */
function applyBooking(state: StaffState, booking: Booking, markFresh: boolean): StaffState {
  if (booking.date !== state.date) return state;
  const existing = state.bookings.find((b) => b.booking_id === booking.booking_id);
  if (existing && (sameBooking(existing, booking) || (existing.status === "cancelled" && booking.status === "confirmed"))) {
    return state;
  }
  const others = state.bookings.filter((b) => b.booking_id !== booking.booking_id);
  return {
    ...state,
    bookings: [...others, booking].sort(byTime),
    fresh: markFresh ? [...state.fresh.filter((id) => id !== booking.booking_id), booking.booking_id] : state.fresh,
  };
}

/** An open confirmation is moot once its booking is cancelled, whoever cancelled it. */
function settleCancel(state: StaffState, booking: Booking): StaffState {
  if (state.cancel?.bookingId !== booking.booking_id || booking.status !== "cancelled") return state;
  return { ...state, cancel: null };
}

function byTime(a: Booking, b: Booking): number {
  return a.hour.localeCompare(b.hour) || a.created_at.localeCompare(b.created_at);
}

function mergeTurns(existing: Turn[], incoming: Turn[]): Turn[] {
  const bySeq = new Map(existing.map((t) => [t.seq, t]));
  for (const turn of incoming) bySeq.set(turn.seq, turn);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

function touch(state: StaffState, sessionId: string, now: number, change: Partial<ConversationView>): StaffState {
  const current = state.conversations[sessionId] ?? { sessionId, session: null, turns: [], touched: now };
  return {
    ...state,
    conversations: { ...state.conversations, [sessionId]: { ...current, ...change, touched: now } },
  };
}

export function staffReducer(state: StaffState, action: StaffAction): StaffState {
  switch (action.type) {
    case "date":
      return action.date === state.date ? state : { ...state, date: action.date, bookings: [], fresh: [], cancel: null };
    case "bookingsLoaded":
      if (action.date !== state.date) return state; // a slow response for a day no longer shown
      return { ...state, bookings: [...action.bookings].sort(byTime), fresh: [] };
    case "conversationLoaded": {
      const current = state.conversations[action.sessionId];
      return touch(state, action.sessionId, action.now, { turns: mergeTurns(current?.turns ?? [], action.turns) });
    }
    case "event": {
      const payload = action.payload;
      switch (payload.type) {
        case "booking.created":
        case "booking.cancelled": {
          // This desk's own cancellation in flight is not news to highlight.
          const own = state.cancel?.bookingId === payload.booking.booking_id && state.cancel.phase === "sending";
          return settleCancel(applyBooking(state, payload.booking, !own), payload.booking);
        }
        case "turn.added": {
          const turn = payload.turn;
          const current = state.conversations[turn.session_id];
          return touch(state, turn.session_id, action.now, { turns: mergeTurns(current?.turns ?? [], [turn]) });
        }
        case "session.started":
        case "session.ended":
          return touch(state, payload.session.session_id, action.now, { session: payload.session });
      }
      break;
    }
    case "cancelOpen":
      if (state.cancel?.phase === "sending") return state; // one cancellation at a time
      return { ...state, cancel: { bookingId: action.bookingId, phase: "confirm", problem: null } };
    case "cancelClose":
      return state.cancel === null || state.cancel.phase === "sending" ? state : { ...state, cancel: null };
    case "cancelSending":
      return { ...state, cancel: { bookingId: action.bookingId, phase: "sending", problem: null } };
    case "cancelFailed":
      if (state.cancel?.bookingId !== action.bookingId) return state; // already settled by the live event
      return { ...state, cancel: { bookingId: action.bookingId, phase: "failed", problem: action.problem } };
    case "cancelDone":
      return settleCancel(applyBooking(state, action.booking, false), action.booking);
  }
  return state;
}

/** "N bookings, M guests confirmed" counts the confirmed ones; cancellations are counted apart. */
export function bookingSummary(bookings: Booking[]): { bookings: number; guests: number; cancelled: number } {
  const confirmed = bookings.filter((b) => b.status === "confirmed");
  return {
    bookings: confirmed.length,
    guests: confirmed.reduce((n, b) => n + b.num_guests, 0),
    cancelled: bookings.length - confirmed.length,
  };
}

/** Turn a failed cancel request into what the desk should read and may do next. */
export function cancelProblem(error: unknown): CancelProblem {
  if (!(error instanceof ApiFailure)) {
    return { message: error instanceof Error ? error.message : String(error), signIn: false, retry: true };
  }
  if (error.status === 401 || error.status === 403) {
    return { message: "Your staff sign-in was not accepted, so the booking was not cancelled. Sign in again, then retry.", signIn: true, retry: false };
  }
  if (error.status === 0) {
    return {
      message: "The server could not be reached, so the booking may not be cancelled yet. Check the connection and try again.",
      signIn: false,
      retry: true,
    };
  }
  if (error.status === 404) {
    return { message: "This booking no longer exists. Reload the day to see the current list.", signIn: false, retry: false };
  }
  if (error.status === 429) {
    return { message: "Too many cancellations in a short time. Wait a few seconds and try again.", signIn: false, retry: true };
  }
  if (error.status >= 500) {
    return { message: `The server could not cancel the booking right now: ${error.message} Try again in a moment.`, signIn: false, retry: true };
  }
  return { message: error.message, signIn: false, retry: true }; // e.g. 422: the reason is too long
}

/** Conversations newest first. */
export function conversationList(state: StaffState): ConversationView[] {
  return Object.values(state.conversations).sort((a, b) => b.touched - a.touched);
}

/**
 * The calendar day it is now in `timeZone` (the restaurant's), as YYYY-MM-DD: a desk in another zone
 * than the restaurant, or a browser set to UTC, would otherwise open on the wrong day around midnight.
 */
export function todayIn(timeZone: string, now: Date = new Date()): string {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(now);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}-${part("day")}`;
}
