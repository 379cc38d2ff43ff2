// Web Audio helpers shared by both transports: level meters, PCM capture for the WebSocket
// transport (through an AudioWorklet that resamples to 16 kHz) and gapless 24 kHz PCM playback.

export interface LevelMeter {
  /** RMS level of the last ~50 ms, 0..1 */
  level(): number;
  dispose(): void;
}

/** Measure a node's signal without making it audible (the analyser is fed into a muted sink). */
export function createMeter(ctx: AudioContext, source: AudioNode): LevelMeter {
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(analyser);
  // Chrome only pulls nodes that lead to the destination; a zero gain keeps this branch silent.
  analyser.connect(mute).connect(ctx.destination);
  const buffer = new Float32Array(analyser.fftSize);
  return {
    level() {
      analyser.getFloatTimeDomainData(buffer);
      let sum = 0;
      for (const sample of buffer) sum += sample * sample;
      return Math.sqrt(sum / buffer.length);
    },
    dispose() {
      try {
        source.disconnect(analyser);
      } catch {
        /* already disconnected */
      }
      analyser.disconnect();
      mute.disconnect();
    },
  };
}

export const CAPTURE_RATE = 16_000;
export const PLAYBACK_RATE = 24_000;

const workletsLoaded = new WeakMap<BaseAudioContext, Set<string>>();

/**
 * Run `source` through the AudioWorklet processor `processor` of public/`moduleFile` (loaded once per
 * context) and hand each message it posts to `onMessage`. Its output goes to a muted sink: Chrome only
 * pulls nodes that lead to the destination. Returns the detach function.
 */
export async function connectWorklet<T>(
  ctx: AudioContext,
  source: AudioNode,
  moduleFile: string,
  processor: string,
  processorOptions: Record<string, unknown>,
  onMessage: (data: T) => void,
): Promise<() => void> {
  let loaded = workletsLoaded.get(ctx);
  if (!loaded) workletsLoaded.set(ctx, (loaded = new Set()));
  if (!loaded.has(moduleFile)) {
    await ctx.audioWorklet.addModule(new URL(moduleFile, document.baseURI).href);
    loaded.add(moduleFile);
  }
  const node = new AudioWorkletNode(ctx, processor, {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    channelCount: 1,
    channelCountMode: "explicit",
    processorOptions,
  });
  node.port.onmessage = (ev: MessageEvent<T>) => onMessage(ev.data);
  const mute = ctx.createGain();
  mute.gain.value = 0;
  source.connect(node);
  node.connect(mute).connect(ctx.destination);
  return () => {
    node.port.onmessage = null;
    try {
      source.disconnect(node);
    } catch {
      /* already disconnected */
    }
    node.disconnect();
    mute.disconnect();
  };
}

/**
 * Stream the microphone as 16 kHz mono s16le chunks of 20 ms. The worklet (public/pcm-capture.js)
 * resamples from the context's rate itself, because Firefox refuses to connect a microphone to an
 * AudioContext created at a different sample rate.
 */
export function startPcmCapture(
  ctx: AudioContext,
  source: MediaStreamAudioSourceNode,
  onChunk: (pcm: ArrayBuffer) => void,
): Promise<() => void> {
  return connectWorklet(ctx, source, "pcm-capture.js", "pcm-capture",
    { targetRate: CAPTURE_RATE, chunkSamples: CAPTURE_RATE / 50 }, onChunk);
}

/** Gapless playback of 24 kHz mono s16le chunks; `flush()` drops everything queued (barge-in). */
export class PcmPlayer {
  readonly output: GainNode;
  private nextTime = 0;
  private readonly playing = new Set<AudioBufferSourceNode>();

  constructor(private readonly ctx: AudioContext) {
    this.output = ctx.createGain();
    this.output.connect(ctx.destination);
  }

  enqueue(pcm: ArrayBuffer): void {
    const samples = new Int16Array(pcm, 0, Math.floor(pcm.byteLength / 2));
    if (samples.length === 0) return;
    const buffer = this.ctx.createBuffer(1, samples.length, PLAYBACK_RATE);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i += 1) channel[i] = samples[i] / 32768;
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.output);
    // A small lead absorbs network jitter between chunks without audible gaps.
    const start = Math.max(this.nextTime, this.ctx.currentTime + 0.05);
    node.start(start);
    this.nextTime = start + buffer.duration;
    this.playing.add(node);
    node.onended = () => this.playing.delete(node);
  }

  flush(): void {
    for (const node of this.playing) {
      try {
        node.stop();
      } catch {
        /* not started yet */
      }
      node.disconnect();
    }
    this.playing.clear();
    this.nextTime = 0;
  }

  close(): void {
    this.flush();
    this.output.disconnect();
  }
}
