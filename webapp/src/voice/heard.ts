// The reply time the guest actually gets: end of their voiced speech on the microphone -> the first
// non-silent sample of the assistant's audio, both measured here on the page's own AudioContext clock.
// The runtime's `latency` message cannot be that figure: it starts when the server learns the speech
// ended and stops when the reply leaves the server, so it leaves out the network both ways, the jitter
// buffer and the playout. bench/caller_latency.py measures the same way from its callers; after each
// reply the page reports its figure ({"type":"heard"}) for /metrics' voice_caller_response_seconds.
//
// ReplyTimer is pure (blocks of levels in, figures out) so the rules are tested without a browser; the
// AudioWorklet public/level-tap.js turns both streams into those blocks.

import { connectWorklet } from "./audio";

/** One ~10 ms block of a stream, timed on the AudioContext clock (seconds). */
export interface LevelBlock {
  start: number;
  end: number;
  rms: number;
  /** context time of the block's first sample at or above SOUND_PEAK, or null */
  firstLoud: number | null;
}

/** Microphone blocks at least this loud (RMS, -40 dBFS) are the guest's voice. */
export const VOICED_RMS = 0.01;
/** An assistant sample at least this loud (-40 dBFS peak) is sound; the same threshold as the bench. */
export const SOUND_PEAK = 0.01;
/** Unvoiced runs shorter than this are a pause inside the utterance, not its end. */
export const HANGOVER_S = 0.6;
/** Voiced time an utterance needs before its end counts (a cough or a click is not a turn). */
export const MIN_SPEECH_S = 0.2;
/** The assistant is "sounding" for this long after a loud sample; a sound after more quiet is a new reply. */
export const ASSISTANT_QUIET_S = 0.3;
/** Figures above this are not reply times (a muted tab); the runtime refuses them too. */
export const MAX_HEARD_MS = 30_000;

export class ReplyTimer {
  private voiced = 0; // voiced seconds in the current utterance
  private lastVoicedEnd = -Infinity;
  private assistantLastLoud = -Infinity;
  private armed = false;

  /**
   * @param extraSeconds fixed latency outside the graph: input latency before the mic reaches the context and
   *   output latency after the assistant's audio leaves it (both count in what the guest hears)
   */
  constructor(private readonly extraSeconds = 0) {}

  /** Feed a microphone block. While the assistant sounds, the mic hears it (echo), not the guest. */
  mic(block: LevelBlock): void {
    if (block.start - this.assistantLastLoud < ASSISTANT_QUIET_S) return;
    if (block.rms >= VOICED_RMS) {
      if (block.start - this.lastVoicedEnd > HANGOVER_S) this.voiced = 0; // a new utterance
      this.voiced += block.end - block.start;
      this.lastVoicedEnd = block.end;
      if (this.voiced >= MIN_SPEECH_S) this.armed = true;
    } else if (!this.armed && block.start - this.lastVoicedEnd > HANGOVER_S) {
      this.voiced = 0;
    }
  }

  /** Feed an assistant block; returns the reply time in ms when this block starts the reply to the guest. */
  assistant(block: LevelBlock): number | null {
    if (block.firstLoud === null) return null;
    const onset = block.firstLoud - this.assistantLastLoud > ASSISTANT_QUIET_S;
    this.assistantLastLoud = block.end;
    if (!onset || !this.armed || block.firstLoud < this.lastVoicedEnd) return null;
    this.armed = false;
    this.voiced = 0;
    const ms = (block.firstLoud - this.lastVoicedEnd + this.extraSeconds) * 1000;
    return ms > 0 && ms <= MAX_HEARD_MS ? ms : null;
  }
}

/** Tap `node` with public/level-tap.js; `onBlock` gets its ~10 ms blocks. Returns the detach function. */
export function tapLevels(ctx: AudioContext, node: AudioNode, onBlock: (block: LevelBlock) => void): Promise<() => void> {
  return connectWorklet(ctx, node, "level-tap.js", "level-tap", { soundPeak: SOUND_PEAK }, onBlock);
}

/** Measure every reply of a call; `onReply` gets each figure in ms. */
export async function startReplyTimer(
  ctx: AudioContext,
  mic: { source: AudioNode; track: MediaStreamTrack | undefined },
  assistant: AudioNode,
  onReply: (ms: number) => void,
): Promise<() => void> {
  const settings = (mic.track?.getSettings() ?? {}) as MediaTrackSettings & { latency?: number };
  const timer = new ReplyTimer((settings.latency ?? 0) + (ctx.outputLatency || ctx.baseLatency || 0));
  const detachMic = await tapLevels(ctx, mic.source, (block) => timer.mic(block));
  const detachAssistant = await tapLevels(ctx, assistant, (block) => {
    const ms = timer.assistant(block);
    if (ms !== null) onReply(ms);
  });
  return () => {
    detachMic();
    detachAssistant();
  };
}
