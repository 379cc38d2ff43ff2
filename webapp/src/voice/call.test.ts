import { describe, expect, it } from "vitest";

import { microphoneMessage } from "./call";

describe("microphone error messages", () => {
  it("tells the guest what to do for each getUserMedia failure", () => {
    expect(microphoneMessage(new DOMException("Permission denied", "NotAllowedError"))).toMatch(/blocked.*Allow the microphone/);
    expect(microphoneMessage(new DOMException("Requested device not found", "NotFoundError"))).toMatch(/No microphone was found/);
    expect(microphoneMessage(new DOMException("Could not start audio source", "NotReadableError"))).toMatch(/in use by another application/);
    expect(microphoneMessage(new Error("weird"))).toMatch(/could not be opened/);
  });
});
