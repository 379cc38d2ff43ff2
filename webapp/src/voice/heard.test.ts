import { describe, expect, it } from "vitest";

import { type LevelBlock, ReplyTimer } from "./heard";

const BLOCK = 0.01;

/** Blocks of `seconds` from `start` at one level (RMS); `loud` blocks start sounding at their first sample. */
function blocks(start: number, seconds: number, rms: number, loudAt: number | null = null): LevelBlock[] {
  const out: LevelBlock[] = [];
  for (let t = start; t < start + seconds - 1e-9; t += BLOCK) {
    const firstLoud = loudAt !== null && loudAt < t + BLOCK ? Math.max(t, loudAt) : null;
    out.push({ start: t, end: t + BLOCK, rms, firstLoud });
  }
  return out;
}

function feed(timer: ReplyTimer, mic: LevelBlock[], assistant: LevelBlock[]): number[] {
  // interleave in time order, as the two worklets deliver them
  const events = [...mic.map((b) => ({ b, mic: true })), ...assistant.map((b) => ({ b, mic: false }))].sort(
    (x, y) => x.b.start - y.b.start || (x.mic ? -1 : 1),
  );
  const figures: number[] = [];
  for (const { b, mic: isMic } of events) {
    if (isMic) timer.mic(b);
    else {
      const ms = timer.assistant(b);
      if (ms !== null) figures.push(ms);
    }
  }
  return figures;
}

describe("the reply time the guest hears", () => {
  it("runs from the end of the guest's voiced speech to the assistant's first loud sample", () => {
    const mic = [...blocks(0, 0.5, 0.001), ...blocks(0.5, 1.5, 0.1), ...blocks(2.0, 2.0, 0.002)];
    const assistant = [...blocks(0, 2.4, 0), ...blocks(2.4, 1.0, 0.2, 2.4123)];
    const figures = feed(new ReplyTimer(), mic, assistant);
    expect(figures).toHaveLength(1);
    expect(figures[0]).toBeCloseTo(412.3, 1);
  });

  it("a pause inside the sentence (within the hangover) is not the end; the end is after the last word", () => {
    const mic = [...blocks(0, 1.0, 0.1), ...blocks(1.0, 0.4, 0.002), ...blocks(1.4, 0.6, 0.1), ...blocks(2.0, 1.0, 0.002)];
    const assistant = [...blocks(0, 2.5, 0), ...blocks(2.5, 0.5, 0.2, 2.5)];
    expect(feed(new ReplyTimer(), mic, assistant)[0]).toBeCloseTo(500, 3);
  });

  it("a click is not a turn, and quiet line noise is not speech", () => {
    const mic = [...blocks(0, 1.0, 0.003), ...blocks(1.0, 0.05, 0.2), ...blocks(1.05, 1.0, 0.003)];
    const assistant = [...blocks(0, 1.5, 0), ...blocks(1.5, 0.5, 0.2, 1.5)];
    expect(feed(new ReplyTimer(), mic, assistant)).toEqual([]);
  });

  it("one figure per reply: sound that goes on, or the echo of the reply in the microphone, starts nothing new", () => {
    // the echo reaches the microphone a little after the sound leaves the speaker
    const mic = [...blocks(0, 1.0, 0.1), ...blocks(1.0, 0.35, 0.001), ...blocks(1.35, 1.0, 0.1), ...blocks(2.35, 1.0, 0.001)];
    const assistant = [...blocks(0, 1.3, 0), ...blocks(1.3, 1.0, 0.2, 1.3), ...blocks(2.3, 0.2, 0), ...blocks(2.5, 0.5, 0.2, 2.5)];
    const figures = feed(new ReplyTimer(), mic, assistant);
    expect(figures).toHaveLength(1);
    expect(figures[0]).toBeCloseTo(300, 3);
  });

  it("an assistant that starts while the guest still speaks is not timed; the next turn is", () => {
    const mic = [...blocks(0, 2.0, 0.1), ...blocks(2.0, 2.0, 0.001), ...blocks(4.0, 1.0, 0.1), ...blocks(5.0, 1.0, 0.001)];
    const assistant = [...blocks(0, 1.5, 0), ...blocks(1.5, 0.2, 0.2, 1.5), ...blocks(1.7, 3.6, 0), ...blocks(5.3, 0.5, 0.2, 5.3)];
    const figures = feed(new ReplyTimer(), mic, assistant);
    expect(figures).toHaveLength(1);
    expect(figures[0]).toBeCloseTo(300, 3);
  });

  it("adds the latency outside the audio graph (input and output devices)", () => {
    const mic = [...blocks(0, 1.0, 0.1), ...blocks(1.0, 1.0, 0.001)];
    const assistant = [...blocks(0, 1.4, 0), ...blocks(1.4, 0.3, 0.2, 1.4)];
    expect(feed(new ReplyTimer(0.05), mic, assistant)[0]).toBeCloseTo(450, 3);
  });
});
