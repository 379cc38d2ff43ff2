// The two ways a call reaches the runtime.
//
// WebRTC (preferred): Opus over UDP, echo-cancelled by the browser; signaling is one non-trickle
// POST /api/webrtc/offer (the browser waits for ICE gathering to finish so the offer carries every
// candidate, and the runtime's answer carries all of its own - no session affinity needed behind a
// load balancer). Transcript and status arrive on a data channel the browser opens.
//
// WebSocket /ws/audio (fallback for networks that block UDP): raw PCM s16le, 16 kHz up and 24 kHz
// down, JSON text frames for everything else.

import { type ServerMessage, parseServerMessage } from "../protocol";
import { type LevelMeter, PcmPlayer, createMeter, startPcmCapture } from "./audio";
import { type RouteInfo, selectedRoute } from "./connectivity";

export type TransportName = "webrtc" | "websocket";

export interface CallHandlers {
  onMessage(message: ServerMessage): void;
  /** the call ended without the guest hanging up (network loss, server closed it) */
  onDropped(reason: string): void;
}

export interface ActiveCall {
  transport: TransportName;
  sessionId: string;
  sessionToken: string;
  assistantMeter: LevelMeter;
  /** the assistant's audio as the guest hears it, in the call's AudioContext (for the reply timer) */
  assistantNode: AudioNode;
  /** send a control message to the runtime (the reply timer's "heard" report); dropped when closed */
  send(message: Record<string, unknown>): void;
  /** barge-in: drop assistant audio queued on this side (the WebSocket transport buffers some) */
  flushPlayback(): void;
  /** the path the audio takes now (WebRTC: the selected candidate pair); null for the WebSocket */
  route(): Promise<RouteInfo | null>;
  hangUp(): void;
}

export class TransportError extends Error {
  constructor(
    message: string,
    /** true when another transport could still work (ICE/network failure, not a refused request) */
    readonly fallback: boolean,
  ) {
    super(message);
  }
}

interface OfferAnswer {
  sdp: string;
  type: RTCSdpType;
  sessionId: string;
  sessionToken: string;
}

function waitForIceGathering(pc: RTCPeerConnection, maxMs: number): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    // An unreachable STUN/TURN server can hold gathering for many seconds; send what we have.
    const timer = setTimeout(done, maxMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function errorMessage(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { error?: { message?: string } };
    if (body.error?.message) return body.error.message;
  } catch {
    /* not JSON */
  }
  return `HTTP ${response.status}`;
}

export interface WebRtcOptions {
  ctx: AudioContext;
  mic: MediaStream;
  voice: string | null;
  iceServers: RTCIceServer[];
  iceTransportPolicy: RTCIceTransportPolicy;
  connectTimeoutMs: number;
  /** where the assistant's audio plays: Chrome decodes a remote track only when a media element has it */
  audioElement: HTMLAudioElement;
  handlers: CallHandlers;
}

export async function connectWebRtc(opts: WebRtcOptions): Promise<ActiveCall> {
  const pc = new RTCPeerConnection({ iceServers: opts.iceServers, iceTransportPolicy: opts.iceTransportPolicy });
  let meter: LevelMeter | null = null;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    meter?.dispose();
    opts.audioElement.srcObject = null;
    pc.close();
  };

  try {
    for (const track of opts.mic.getAudioTracks()) pc.addTrack(track, opts.mic);
    const channel = pc.createDataChannel("control", { ordered: true });
    channel.onmessage = (ev: MessageEvent) => {
      const message = parseServerMessage(typeof ev.data === "string" ? ev.data : "");
      if (message) opts.handlers.onMessage(message);
    };

    const remote = new Promise<MediaStream>((resolve) => {
      pc.ontrack = (ev) => resolve(ev.streams[0] ?? new MediaStream([ev.track]));
    });

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, 3000);
    const local = pc.localDescription;
    if (!local) throw new TransportError("could not create a WebRTC offer", true);

    let response: Response;
    try {
      response = await fetch("/api/webrtc/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: local.sdp, type: local.type, voice: opts.voice ?? undefined }),
      });
    } catch {
      throw new TransportError("the voice service could not be reached", true);
    }
    if (!response.ok) {
      // 503 (busy) is final: the WebSocket would be refused the same way. Anything else (no WebRTC
      // route behind this proxy, 5xx) is worth trying the other transport for.
      throw new TransportError(await errorMessage(response), response.status !== 503 && response.status !== 429);
    }
    const answer = (await response.json()) as OfferAnswer;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });

    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new TransportError("the audio connection did not come up (UDP may be blocked)", true)),
        opts.connectTimeoutMs,
      );
      const check = () => {
        const state = pc.connectionState;
        if (state === "connected") {
          clearTimeout(timer);
          resolve();
        } else if (state === "failed" || state === "closed") {
          clearTimeout(timer);
          reject(new TransportError("the audio connection failed", true));
        }
      };
      pc.addEventListener("connectionstatechange", check);
      check();
    });

    const stream = await remote;
    opts.audioElement.srcObject = stream;
    void opts.audioElement.play().catch(() => undefined);
    const assistantNode = opts.ctx.createMediaStreamSource(stream);
    meter = createMeter(opts.ctx, assistantNode);

    pc.addEventListener("connectionstatechange", () => {
      if (!closed && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        close();
        opts.handlers.onDropped("the audio connection was lost");
      }
    });
    channel.onclose = () => {
      if (!closed) {
        close();
        opts.handlers.onDropped("the assistant ended the call");
      }
    };

    const assistantMeter = meter;
    return {
      transport: "webrtc",
      sessionId: answer.sessionId,
      sessionToken: answer.sessionToken,
      assistantMeter,
      assistantNode,
      send: (message) => {
        if (channel.readyState === "open") channel.send(JSON.stringify(message));
      },
      flushPlayback: () => undefined, // the runtime flushes its own queue; the browser buffers ~40 ms
      route: async () => {
        if (closed) return null;
        const stats = await pc.getStats();
        return selectedRoute(Array.from(stats.values()) as Parameters<typeof selectedRoute>[0]);
      },
      hangUp: () => {
        if (channel.readyState === "open") {
          try {
            channel.send(JSON.stringify({ type: "hangup" }));
          } catch {
            /* closing anyway */
          }
        }
        close();
      },
    };
  } catch (error) {
    close();
    if (error instanceof TransportError) throw error;
    throw new TransportError(error instanceof Error ? error.message : String(error), true);
  }
}

export interface WebSocketOptions {
  ctx: AudioContext;
  micSource: MediaStreamAudioSourceNode;
  voice: string | null;
  handlers: CallHandlers;
  connectTimeoutMs?: number;
}

export async function connectWebSocket(opts: WebSocketOptions): Promise<ActiveCall> {
  const url = new URL("/ws/audio", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (opts.voice) url.searchParams.set("voice", opts.voice);
  const socket = new WebSocket(url.toString());
  socket.binaryType = "arraybuffer";
  const player = new PcmPlayer(opts.ctx);
  const meter = createMeter(opts.ctx, player.output);
  let stopCapture: (() => void) | null = null;
  let closed = false;
  let established = false;

  const cleanup = () => {
    if (closed) return;
    closed = true;
    stopCapture?.();
    meter.dispose();
    player.close();
    if (socket.readyState === WebSocket.OPEN) {
      try {
        socket.send(JSON.stringify({ type: "hangup" }));
      } catch {
        /* closing anyway */
      }
    }
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close(1000, "hang up");
  };

  const session = new Promise<{ sessionId: string; sessionToken: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TransportError("the voice service did not answer", false)), opts.connectTimeoutMs ?? 10_000);
    socket.onmessage = (ev: MessageEvent) => {
      if (ev.data instanceof ArrayBuffer) {
        player.enqueue(ev.data);
        return;
      }
      const message = parseServerMessage(typeof ev.data === "string" ? ev.data : "");
      if (!message) return;
      if (message.type === "session") {
        clearTimeout(timer);
        resolve({ sessionId: message.sessionId, sessionToken: message.sessionToken });
      }
      if (message.type === "interrupted") player.flush();
      opts.handlers.onMessage(message);
    };
    socket.onclose = (ev: CloseEvent) => {
      clearTimeout(timer);
      if (!established) {
        reject(new TransportError(ev.reason || "the voice service closed the connection", false));
      } else if (!closed) {
        cleanup();
        opts.handlers.onDropped(ev.reason || "the connection to the assistant was lost");
      }
    };
  });

  try {
    const ids = await session;
    established = true;
    stopCapture = await startPcmCapture(opts.ctx, opts.micSource, (pcm) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(pcm);
    });
    return {
      transport: "websocket",
      ...ids,
      assistantMeter: meter,
      assistantNode: player.output,
      send: (message) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
      },
      flushPlayback: () => player.flush(),
      route: async () => null,
      hangUp: cleanup,
    };
  } catch (error) {
    cleanup();
    throw error;
  }
}
