// Shapes exchanged with the runtime. Mirrors runtime/speech/ports.py (messages on the data channel
// and the /ws/audio text frames), runtime/stores/base.py (record dicts) and runtime/changes.py
// (event payloads). Everything arriving from the network is parsed defensively with the guards
// below: a malformed frame is dropped, never allowed to crash the UI.

export type Role = "USER" | "ASSISTANT";

export interface Booking {
  booking_id: string;
  name: string;
  date: string; // YYYY-MM-DD
  hour: string; // HH:MM
  num_guests: number;
  status: "confirmed" | "cancelled";
  created_at: string;
  session_id?: string;
  cancellation_reason?: string;
  cancelled_at?: string;
}

export interface Turn {
  session_id: string;
  seq: number;
  role: Role;
  text: string;
  created_at: string;
  turn_id?: string;
}

export interface SessionInfo {
  session_id: string;
  status: "active" | "ended";
  created_at: string;
  transport?: string;
  engine?: string;
  ended_at?: string;
  end_reason?: string;
}

export type AssistantState = "listening" | "thinking" | "speaking" | "ended" | "error";

export type ServerMessage =
  | { type: "session"; sessionId: string; sessionToken: string }
  // `fallback`: the call moved to the backup (offline) engine because Nova Sonic was unavailable (docs/failover.md)
  | { type: "status"; state: AssistantState; fallback?: { engine: string; reason: string } }
  | { type: "transcript"; role: Role; text: string; final: boolean; turnId?: string }
  | { type: "booking"; action: "created" | "cancelled" | "found"; booking: Booking }
  | { type: "interrupted" }
  | { type: "latency"; endOfSpeechToAudioMs: number }
  | { type: "error"; code: string; message: string };

export type EventPayload =
  | { type: "booking.created" | "booking.cancelled"; eventId: string; booking: Booking }
  | { type: "turn.added"; eventId: string; turn: Turn }
  | { type: "session.started" | "session.ended"; eventId: string; session: SessionInfo };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isBooking(value: unknown): value is Booking {
  return (
    isObject(value) &&
    typeof value.booking_id === "string" &&
    typeof value.name === "string" &&
    typeof value.date === "string" &&
    typeof value.hour === "string" &&
    typeof value.num_guests === "number" &&
    (value.status === "confirmed" || value.status === "cancelled")
  );
}

function isRole(value: unknown): value is Role {
  return value === "USER" || value === "ASSISTANT";
}

export function isTurn(value: unknown): value is Turn {
  return (
    isObject(value) &&
    typeof value.session_id === "string" &&
    typeof value.seq === "number" &&
    isRole(value.role) &&
    typeof value.text === "string"
  );
}

/** Validate a data-channel / WebSocket text frame; unknown or malformed messages give null. */
export function parseServerMessage(raw: unknown): ServerMessage | null {
  let value = raw;
  if (typeof raw === "string") {
    try {
      value = JSON.parse(raw);
    } catch {
      return null;
    }
  }
  if (!isObject(value) || typeof value.type !== "string") return null;
  switch (value.type) {
    case "session":
      return typeof value.sessionId === "string" && typeof value.sessionToken === "string"
        ? { type: "session", sessionId: value.sessionId, sessionToken: value.sessionToken }
        : null;
    case "status":
      if (typeof value.state !== "string") return null;
      return value.fallback === true
        ? {
            type: "status",
            state: value.state as AssistantState,
            fallback: { engine: String(value.engine ?? ""), reason: String(value.reason ?? "") },
          }
        : { type: "status", state: value.state as AssistantState };
    case "transcript":
      if (!isRole(value.role) || typeof value.text !== "string") return null;
      return {
        type: "transcript",
        role: value.role,
        text: value.text,
        // A transcript without the flag is treated as final: better a finished line than one
        // that waits forever for a replacement.
        final: value.final !== false,
        turnId: typeof value.turnId === "string" ? value.turnId : undefined,
      };
    case "booking":
      if (!isBooking(value.booking)) return null;
      return {
        type: "booking",
        action: value.action === "cancelled" || value.action === "found" ? value.action : "created",
        booking: value.booking,
      };
    case "interrupted":
      return { type: "interrupted" };
    case "latency":
      return typeof value.endOfSpeechToAudioMs === "number"
        ? { type: "latency", endOfSpeechToAudioMs: value.endOfSpeechToAudioMs }
        : null;
    case "error":
      return {
        type: "error",
        code: typeof value.code === "string" ? value.code : "error",
        message: typeof value.message === "string" ? value.message : "Something went wrong.",
      };
    default:
      return null;
  }
}

/** Validate an events-channel payload (the parsed `event` string of an AppSync data frame). */
export function parseEventPayload(value: unknown): EventPayload | null {
  if (!isObject(value) || typeof value.type !== "string" || typeof value.eventId !== "string") return null;
  const eventId = value.eventId;
  switch (value.type) {
    case "booking.created":
    case "booking.cancelled":
      return isBooking(value.booking) ? { type: value.type, eventId, booking: value.booking } : null;
    case "turn.added":
      return isTurn(value.turn) ? { type: "turn.added", eventId, turn: value.turn } : null;
    case "session.started":
    case "session.ended":
      return isObject(value.session) && typeof value.session.session_id === "string"
        ? { type: value.type, eventId, session: value.session as unknown as SessionInfo }
        : null;
    default:
      return null;
  }
}
