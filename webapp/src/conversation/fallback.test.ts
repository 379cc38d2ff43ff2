import { describe, expect, it } from "vitest";

import { parseServerMessage } from "../protocol";
import { type ConversationAction, conversationReducer, initialConversation } from "./state";

// The runtime's failover marker (docs/failover.md): a status message that also says the call moved engines.
const msg = (raw: Record<string, unknown>): ConversationAction => {
  const message = parseServerMessage(JSON.stringify(raw));
  if (!message) throw new Error(`unparseable ${JSON.stringify(raw)}`);
  return { type: "message", message };
};

describe("failover marker", () => {
  it("is set by a status message with fallback and survives later status changes", () => {
    const state = [
      msg({ type: "status", state: "listening" }),
      msg({ type: "status", state: "thinking", engine: "local", fallback: true, reason: "throttled" }),
      msg({ type: "status", state: "speaking" }),
    ].reduce(conversationReducer, initialConversation);
    expect(state.fallback).toEqual({ engine: "local", reason: "throttled" });
    expect(state.assistant).toBe("speaking");
  });

  it("is not set by ordinary status messages", () => {
    const state = [msg({ type: "status", state: "listening", fallback: false })].reduce(
      conversationReducer,
      initialConversation,
    );
    expect(state.fallback).toBeNull();
  });
});
