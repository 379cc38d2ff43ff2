// What the staff page shows: the chosen day's bookings and the conversations seen so far, kept up to
// date by events. A pure reducer so "the booking appears without reloading" is unit-testable.

import type { Booking, EventPayload, SessionInfo, Turn } from "../protocol";

export interface ConversationView {
  sessionId: string;
  session: SessionInfo | null;
  turns: Turn[];
  /** when this conversation last changed (ms epoch), for ordering the list */
  touched: number;
}

export interface StaffState {
  date: string;
  bookings: Booking[];
  /** booking ids that arrived live, highlighted in the table */
  fresh: string[];
  conversations: Record<string, ConversationView>;
}

export type StaffAction =
  | { type: "date"; date: string }
  | { type: "bookingsLoaded"; date: string; bookings: Booking[] }
  | { type: "conversationLoaded"; sessionId: string; turns: Turn[]; now: number }
  | { type: "event"; payload: EventPayload; now: number };

export function initialStaff(date: string): StaffState {
  return { date, bookings: [], fresh: [], conversations: {} };
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
      return action.date === state.date ? state : { ...state, date: action.date, bookings: [], fresh: [] };
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
          const booking = payload.booking;
          if (booking.date !== state.date) return state;
          const others = state.bookings.filter((b) => b.booking_id !== booking.booking_id);
          return {
            ...state,
            bookings: [...others, booking].sort(byTime),
            fresh: [...state.fresh.filter((id) => id !== booking.booking_id), booking.booking_id],
          };
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
    }
  }
}

/** Conversations newest first. */
export function conversationList(state: StaffState): ConversationView[] {
  return Object.values(state.conversations).sort((a, b) => b.touched - a.touched);
}
