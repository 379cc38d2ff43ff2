// The capture worklet is plain JS served from public/ (AudioWorklet modules load by URL). Here it
// runs in a stand-in for AudioWorkletGlobalScope to check the resampling the server relies on.
import { describe, expect, it } from "vitest";

import source from "../../public/pcm-capture.js?raw";

interface Processor {
  port: { postMessage(data: ArrayBuffer): void };
  process(inputs: Float32Array[][]): boolean;
}

function loadWorklet(rate: number): new (options: unknown) => Processor {
  let registered: (new (options: unknown) => Processor) | null = null;
  class AudioWorkletProcessor {
    port = { postMessage: (_data: ArrayBuffer) => undefined };
  }
  const register = (_name: string, ctor: new (options: unknown) => Processor) => {
    registered = ctor;
  };
  new Function("AudioWorkletProcessor", "registerProcessor", "sampleRate", source)(AudioWorkletProcessor, register, rate);
  if (!registered) throw new Error("the worklet registered no processor");
  return registered;
}

function capture(rate: number, seconds: number, frequency: number, amplitude = 0.5): Int16Array {
  const Ctor = loadWorklet(rate);
  const processor = new Ctor({ processorOptions: { targetRate: 16000, chunkSamples: 320 } });
  const chunks: Int16Array[] = [];
  processor.port.postMessage = (data: ArrayBuffer) => {
    chunks.push(new Int16Array(data));
  };
  const total = Math.round(rate * seconds);
  for (let start = 0; start < total; start += 128) {
    const block = new Float32Array(128);
    for (let i = 0; i < 128; i += 1) block[i] = amplitude * Math.sin((2 * Math.PI * frequency * (start + i)) / rate);
    processor.process([[block]]);
  }
  const out = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    expect(chunk.length).toBe(320); // 20 ms at 16 kHz per message
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function zeroCrossingsPerSecond(samples: Int16Array): number {
  let crossings = 0;
  for (let i = 1; i < samples.length; i += 1) if (samples[i - 1] < 0 !== samples[i] < 0) crossings += 1;
  return crossings / (samples.length / 16000);
}

describe("pcm-capture worklet", () => {
  for (const rate of [48000, 44100, 16000]) {
    it(`turns ${rate} Hz input into 16 kHz s16 chunks at the same pitch and level`, () => {
      const out = capture(rate, 2, 440);
      expect(Math.abs(out.length - 32000)).toBeLessThanOrEqual(320); // 2 s of 16 kHz, whole chunks
      expect(zeroCrossingsPerSecond(out)).toBeGreaterThan(870); // a 440 Hz tone crosses zero 880 times/s
      expect(zeroCrossingsPerSecond(out)).toBeLessThan(890);
      const peak = out.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(peak / 32767).toBeGreaterThan(0.45); // a 3-sample box filter barely touches 440 Hz
      expect(peak / 32768).toBeLessThanOrEqual(0.5);
    });
  }

  it("clips instead of wrapping around on overloaded input", () => {
    const out = capture(48000, 0.1, 100, 1.5);
    expect(Math.max(...out)).toBe(32767);
    expect(Math.min(...out)).toBe(-32768);
  });
});
