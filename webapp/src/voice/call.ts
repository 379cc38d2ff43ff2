// Starting a call: microphone first (with messages a guest can act on), then WebRTC, then the
// WebSocket transport when WebRTC cannot connect within a few seconds.

import type { AppConfig } from "../config";
import { type LevelMeter, createMeter } from "./audio";
import { startReplyTimer } from "./heard";
import { type ActiveCall, type CallHandlers, TransportError, type TransportName, connectWebRtc, connectWebSocket } from "./transports";

export class MicrophoneError extends Error {}

/** Turn getUserMedia's DOMException names into something a guest can act on. */
export function microphoneMessage(error: unknown): string {
  const name = error instanceof DOMException || error instanceof Error ? error.name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was blocked. Allow the microphone for this site in your browser's address bar or settings, then press Talk again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect a microphone or headset and press Talk again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is in use by another application or could not be started. Close other apps using it and try again.";
    default:
      return "The microphone could not be opened. Check your browser's microphone settings and try again.";
  }
}

export async function openMicrophone(): Promise<MediaStream> {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new MicrophoneError(
      "This browser cannot use the microphone on this page. Open it over HTTPS (or on localhost) in a current browser.",
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: {
        // The assistant's voice comes out of the speakers: without echo cancellation it would hear
        // itself and interrupt itself. Noise suppression and AGC help recognition on laptops/phones.
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        channelCount: 1,
      },
      video: false,
    });
  } catch (error) {
    throw new MicrophoneError(microphoneMessage(error));
  }
}

export interface CallSession {
  call: ActiveCall;
  micMeter: LevelMeter;
  /** which transports were tried and why the earlier ones were given up */
  fallbackReason: string | null;
  end(): void;
}

export interface StartCallOptions {
  config: AppConfig;
  voice: string | null;
  audioElement: HTMLAudioElement;
  handlers: CallHandlers;
  onTransportAttempt?: (transport: TransportName) => void;
  /** each reply's time as the guest heard it (ms), measured on this page (voice/heard.ts) */
  onReplyHeard?: (ms: number) => void;
  /** the connectivity check found that only the WebSocket gets through: do not wait for ICE to fail */
  skipWebRtcBecause?: string | null;
}

export async function startCall(opts: StartCallOptions): Promise<CallSession> {
  const mic = await openMicrophone();
  // Created inside the Talk click, so autoplay rules allow it to start.
  const ctx = new AudioContext({ latencyHint: "interactive" });
  await ctx.resume().catch(() => undefined);
  const micSource = ctx.createMediaStreamSource(mic);
  const micMeter = createMeter(ctx, micSource);
  const release = () => {
    micMeter.dispose();
    mic.getTracks().forEach((track) => track.stop());
    void ctx.close().catch(() => undefined);
  };

  let fallbackReason: string | null = null;
  try {
    let call: ActiveCall | null = null;
    if (opts.skipWebRtcBecause && opts.config.transports.includes("websocket")) {
      fallbackReason = opts.skipWebRtcBecause;
    } else if (opts.config.transports.includes("webrtc") && typeof RTCPeerConnection !== "undefined") {
      opts.onTransportAttempt?.("webrtc");
      try {
        call = await connectWebRtc({
          ctx,
          mic,
          voice: opts.voice,
          iceServers: opts.config.iceServers,
          iceTransportPolicy: opts.config.iceTransportPolicy,
          connectTimeoutMs: opts.config.iceConnectTimeoutMs,
          audioElement: opts.audioElement,
          handlers: opts.handlers,
        });
      } catch (error) {
        const canFallBack = error instanceof TransportError ? error.fallback : true;
        if (!canFallBack || !opts.config.transports.includes("websocket")) throw error;
        fallbackReason = error instanceof Error ? error.message : String(error);
      }
    }
    if (!call) {
      opts.onTransportAttempt?.("websocket");
      call = await connectWebSocket({ ctx, micSource, voice: opts.voice, handlers: opts.handlers });
    }
    const active = call;
    // The reply timer is a measurement: if the worklet cannot load, the call goes on without it.
    const stopTimer = await startReplyTimer(ctx, { source: micSource, track: mic.getAudioTracks()[0] }, active.assistantNode,
      (ms) => {
        active.send({ type: "heard", latencyMs: Math.round(ms * 10) / 10 });
        opts.onReplyHeard?.(ms);
      }).catch(() => () => undefined);
    return {
      call: active,
      micMeter,
      fallbackReason,
      end: () => {
        stopTimer();
        active.hangUp();
        release();
      },
    };
  } catch (error) {
    release();
    throw error;
  }
}
