// The guest's conversation as the UI shows it, built from two sources that overlap:
// live messages from the call (data channel or /ws/audio: partial then final transcripts, status,
// booking, interrupted, latency) and, optionally, the stored turns arriving on the guest's own
// /conversations/<sessionId> events channel. A pure reducer so the merge rules are unit-tested.

import type { AssistantState, Booking, EventPayload, Role, ServerMessage } from "../protocol";

export interface TranscriptLine {
  key: string;
  role: Role;
  text: string;
  final: boolean;
  turnId?: string;
  seq?: number;
  /** the guest talked over the assistant and its audio was cut here */
  interrupted?: boolean;
}

export interface BookingCard {
  action: "created" | "cancelled" | "found";
  booking: Booking;
}

export interface ConversationState {
  sessionId: string | null;
  assistant: AssistantState | "idle";
  lines: TranscriptLine[];
  booking: BookingCard | null;
  /** most recent end-of-speech to first-audio latency, ms */
  latencyMs: number | null;
  latencies: number[];
  error: { code: string; message: string } | null;
  /** set once the call has moved to the backup engine (a status message with `fallback`) */
  fallback: { engine: string; reason: string } | null;
  /** eventIds already applied (bounded), so a re-delivered event changes nothing */
  seenEventIds: string[];
  nextKey: number;
}

export type ConversationAction =
  | { type: "reset" }
  | { type: "session"; sessionId: string }
  | { type: "message"; message: ServerMessage }
  | { type: "event"; payload: EventPayload };

const SEEN_LIMIT = 500;

export const initialConversation: ConversationState = {
  sessionId: null,
  assistant: "idle",
  lines: [],
  booking: null,
  latencyMs: null,
  latencies: [],
  error: null,
  fallback: null,
  seenEventIds: [],
  nextKey: 1,
};

function upsertTranscript(
  state: ConversationState,
  role: Role,
  text: string,
  final: boolean,
  turnId: string | undefined,
  seq?: number,
): ConversationState {
  const lines = state.lines;
  let index = turnId === undefined ? -1 : lines.findIndex((line) => line.turnId === turnId);
  if (index === -1 && final) {
    // Nova Sonic sends the assistant's text twice under different content ids: a SPECULATIVE
    // preview (shown as a partial) and then the FINAL text of what was actually spoken. A final
    // line therefore takes the place of the oldest still-unfinished line of the same speaker.
    index = lines.findIndex((line) => !line.final && line.role === role);
  }
  if (index === -1 && !final && turnId === undefined) {
    // No ids at all: a partial continues the newest line if it is this speaker's unfinished one.
    const last = lines.length - 1;
    if (last >= 0 && !lines[last].final && lines[last].role === role) index = last;
  }
  if (index === -1) {
    const line: TranscriptLine = { key: `l${state.nextKey}`, role, text, final, turnId, seq };
    return { ...state, lines: [...lines, line], nextKey: state.nextKey + 1 };
  }
  const current = lines[index];
  // A late partial must not undo a final text that already replaced it.
  if (current.final && !final) return state;
  const updated: TranscriptLine = {
    ...current,
    text,
    final: current.final || final,
    // The final's id is the one stored turns carry, so it wins over the preview's.
    turnId: final && turnId !== undefined ? turnId : (current.turnId ?? turnId),
    seq: seq ?? current.seq,
  };
  const next = lines.slice();
  next[index] = updated;
  return { ...state, lines: next };
}

function applyMessage(state: ConversationState, message: ServerMessage): ConversationState {
  switch (message.type) {
    case "session":
      return { ...state, sessionId: message.sessionId };
    case "status":
      return { ...state, assistant: message.state, fallback: message.fallback ?? state.fallback };
    case "transcript":
      return upsertTranscript(state, message.role, message.text, message.final, message.turnId);
    case "booking":
      return { ...state, booking: { action: message.action, booking: message.booking } };
    case "interrupted": {
      // Barge-in: the assistant's current line stops where its audio stopped.
      // The guest's own words may already be showing after it (a partial), but a finished guest
      // turn after it means that assistant line was heard out and is left alone.
      const lines = state.lines.slice();
      for (let i = lines.length - 1; i >= 0; i -= 1) {
        const line = lines[i];
        if (line.role === "USER" && line.final) break;
        if (line.role === "ASSISTANT") {
          lines[i] = { ...line, final: true, interrupted: true };
          break;
        }
      }
      return { ...state, lines, assistant: "listening" };
    }
    case "latency":
      return {
        ...state,
        latencyMs: message.endOfSpeechToAudioMs,
        latencies: [...state.latencies, message.endOfSpeechToAudioMs].slice(-20),
      };
    case "error":
      return { ...state, error: { code: message.code, message: message.message } };
  }
}

function applyEvent(state: ConversationState, payload: EventPayload): ConversationState {
  if (state.seenEventIds.includes(payload.eventId)) return state;
  const seenEventIds = [...state.seenEventIds, payload.eventId].slice(-SEEN_LIMIT);
  const marked = { ...state, seenEventIds };
  switch (payload.type) {
    case "turn.added": {
      const turn = payload.turn;
      if (state.sessionId !== null && turn.session_id !== state.sessionId) return marked;
      return upsertTranscript(marked, turn.role, turn.text, true, turn.turn_id, turn.seq);
    }
    case "booking.created":
    case "booking.cancelled": {
      // Only the booking already on the card is updated (e.g. cancelled by staff meanwhile).
      if (!state.booking || state.booking.booking.booking_id !== payload.booking.booking_id) return marked;
      const action = payload.type === "booking.cancelled" ? "cancelled" : state.booking.action;
      return { ...marked, booking: { action, booking: payload.booking } };
    }
    case "session.started":
    case "session.ended":
      if (payload.type === "session.ended" && payload.session.session_id === state.sessionId) {
        return { ...marked, assistant: "ended" };
      }
      return marked;
  }
}

export function conversationReducer(state: ConversationState, action: ConversationAction): ConversationState {
  switch (action.type) {
    case "reset":
      return initialConversation;
    case "session":
      return { ...state, sessionId: action.sessionId };
    case "message":
      return applyMessage(state, action.message);
    case "event":
      return applyEvent(state, action.payload);
  }
}
