import { describe, expect, it } from "vitest";

import { type Booking, parseEventPayload, parseServerMessage } from "../protocol";
import { type ConversationAction, type ConversationState, conversationReducer, initialConversation } from "./state";

function run(actions: ConversationAction[], start: ConversationState = initialConversation): ConversationState {
  return actions.reduce(conversationReducer, start);
}

const msg = (raw: Record<string, unknown>): ConversationAction => {
  const message = parseServerMessage(JSON.stringify(raw));
  if (!message) throw new Error(`unparseable ${JSON.stringify(raw)}`);
  return { type: "message", message };
};

const evt = (raw: Record<string, unknown>): ConversationAction => {
  const payload = parseEventPayload(raw);
  if (!payload) throw new Error(`unparseable ${JSON.stringify(raw)}`);
  return { type: "event", payload };
};

const booking: Booking = {
  booking_id: "BK-7Q2X",
  name: "Ada Lovelace",
  date: "2030-05-01",
  hour: "19:30",
  num_guests: 4,
  status: "confirmed",
  created_at: "2030-04-01T10:00:00Z",
  session_id: "sess-0001",
};

describe("conversation reducer", () => {
  it("shows a partial transcript and replaces it with the final text of the same turn", () => {
    const state = run([
      msg({ type: "transcript", role: "USER", text: "a table for", final: false, turnId: "t1" }),
      msg({ type: "transcript", role: "USER", text: "a table for four", final: false, turnId: "t1" }),
      msg({ type: "transcript", role: "USER", text: "A table for four, please.", final: true, turnId: "t1" }),
    ]);
    expect(state.lines).toHaveLength(1);
    expect(state.lines[0]).toMatchObject({ role: "USER", text: "A table for four, please.", final: true });
  });

  it("replaces the assistant's speculative preview by the final text sent under another id", () => {
    const state = run([
      msg({ type: "transcript", role: "ASSISTANT", text: "Hello, and welcome.", final: false, turnId: "s:1:spec-a" }),
      msg({ type: "transcript", role: "ASSISTANT", text: "How can I help?", final: false, turnId: "s:1:spec-b" }),
      msg({ type: "transcript", role: "ASSISTANT", text: "Hello, and welcome.", final: true, turnId: "s:1:final-a" }),
      msg({ type: "transcript", role: "ASSISTANT", text: "How can I help?", final: true, turnId: "s:1:final-b" }),
    ]);
    expect(state.lines.map((l) => [l.text, l.final, l.turnId])).toEqual([
      ["Hello, and welcome.", true, "s:1:final-a"],
      ["How can I help?", true, "s:1:final-b"],
    ]);
  });

  it("keeps a final text when a late partial of the same turn arrives", () => {
    const state = run([
      msg({ type: "transcript", role: "USER", text: "Hello there.", final: true, turnId: "t1" }),
      msg({ type: "transcript", role: "USER", text: "hello", final: false, turnId: "t1" }),
    ]);
    expect(state.lines.map((l) => l.text)).toEqual(["Hello there."]);
  });

  it("continues an unfinished line without turn ids, and starts a new one after a final", () => {
    const state = run([
      msg({ type: "transcript", role: "ASSISTANT", text: "Hi", final: false }),
      msg({ type: "transcript", role: "ASSISTANT", text: "Hi, welcome!", final: true }),
      msg({ type: "transcript", role: "USER", text: "book", final: false }),
      msg({ type: "transcript", role: "USER", text: "Book a table.", final: true }),
    ]);
    expect(state.lines.map((l) => [l.role, l.text, l.final])).toEqual([
      ["ASSISTANT", "Hi, welcome!", true],
      ["USER", "Book a table.", true],
    ]);
  });

  it("marks the assistant line that was talked over as interrupted", () => {
    const state = run([
      msg({ type: "transcript", role: "USER", text: "Hi.", final: true, turnId: "u1" }),
      msg({ type: "status", state: "speaking" }),
      msg({ type: "transcript", role: "ASSISTANT", text: "Welcome to Nova Bistro, what name", final: true, turnId: "a1" }),
      msg({ type: "transcript", role: "USER", text: "sorry", final: false, turnId: "u2" }),
      msg({ type: "interrupted" }),
    ]);
    const assistant = state.lines.find((l) => l.turnId === "a1");
    expect(assistant?.interrupted).toBe(true);
    expect(state.assistant).toBe("listening");
    expect(state.lines.filter((l) => l.interrupted)).toHaveLength(1);
  });

  it("does not blame an assistant turn that the guest already answered", () => {
    const state = run([
      msg({ type: "transcript", role: "ASSISTANT", text: "What name?", final: true, turnId: "a1" }),
      msg({ type: "transcript", role: "USER", text: "Ada.", final: true, turnId: "u1" }),
      msg({ type: "interrupted" }),
    ]);
    expect(state.lines.some((l) => l.interrupted)).toBe(false);
  });

  it("shows a booking card when a booking is made and updates it when cancelled", () => {
    let state = run([msg({ type: "booking", action: "created", booking })]);
    expect(state.booking).toEqual({ action: "created", booking });
    state = run([msg({ type: "booking", action: "cancelled", booking: { ...booking, status: "cancelled" } })], state);
    expect(state.booking?.action).toBe("cancelled");
    expect(state.booking?.booking.status).toBe("cancelled");
  });

  it("rejects booking messages without a usable booking", () => {
    expect(parseServerMessage({ type: "booking", action: "created", booking: { name: "x" } })).toBeNull();
  });

  it("merges stored turns from the events channel with live lines by turn id, once", () => {
    const turnAdded = {
      type: "turn.added",
      eventId: "turn:sess-0001:2",
      turn: { session_id: "sess-0001", seq: 2, role: "USER", text: "For four people.", created_at: "", turn_id: "u7" },
    };
    const state = run([
      { type: "session", sessionId: "sess-0001" },
      msg({ type: "transcript", role: "USER", text: "for four", final: false, turnId: "u7" }),
      evt(turnAdded),
      evt(turnAdded), // re-delivered: no change
    ]);
    expect(state.lines).toHaveLength(1);
    expect(state.lines[0]).toMatchObject({ text: "For four people.", final: true, seq: 2 });
    expect(state.seenEventIds).toEqual(["turn:sess-0001:2"]);
  });

  it("adds stored turns it did not see live, and ignores other sessions' turns", () => {
    const state = run([
      { type: "session", sessionId: "sess-0001" },
      evt({
        type: "turn.added",
        eventId: "turn:sess-0001:1",
        turn: { session_id: "sess-0001", seq: 1, role: "ASSISTANT", text: "Welcome!", created_at: "", turn_id: "a1" },
      }),
      evt({
        type: "turn.added",
        eventId: "turn:sess-0002:1",
        turn: { session_id: "sess-0002", seq: 1, role: "USER", text: "Not mine", created_at: "", turn_id: "x" },
      }),
    ]);
    expect(state.lines.map((l) => l.text)).toEqual(["Welcome!"]);
  });

  it("applies a staff cancellation of the booking on the card exactly once", () => {
    const cancelled = {
      type: "booking.cancelled",
      eventId: "booking:BK-7Q2X:cancelled",
      booking: { ...booking, status: "cancelled", cancellation_reason: "closed for a private event" },
    };
    let state = run([msg({ type: "booking", action: "created", booking }), evt(cancelled)]);
    expect(state.booking?.action).toBe("cancelled");
    const again = run([evt(cancelled)], state);
    expect(again).toBe(state);
    state = run([evt({ ...cancelled, eventId: "booking:OTHER:cancelled", booking: { ...booking, booking_id: "OTHER" } })], state);
    expect(state.booking?.booking.booking_id).toBe("BK-7Q2X");
  });

  it("records latency, status and errors; reset starts over", () => {
    const state = run([
      msg({ type: "status", state: "thinking" }),
      msg({ type: "latency", endOfSpeechToAudioMs: 412.5 }),
      msg({ type: "latency", endOfSpeechToAudioMs: 388 }),
      msg({ type: "error", code: "model_unavailable", message: "The assistant is unavailable." }),
    ]);
    expect(state.assistant).toBe("thinking");
    expect(state.latencyMs).toBe(388);
    expect(state.latencies).toEqual([412.5, 388]);
    expect(state.error).toEqual({ code: "model_unavailable", message: "The assistant is unavailable." });
    expect(run([{ type: "reset" }], state)).toEqual(initialConversation);
  });

  it("drops unknown or malformed messages", () => {
    expect(parseServerMessage("{")).toBeNull();
    expect(parseServerMessage({ type: "nope" })).toBeNull();
    expect(parseServerMessage({ type: "transcript", role: "BOT", text: "x" })).toBeNull();
    expect(parseEventPayload({ type: "turn.added", turn: {} })).toBeNull();
  });
});
