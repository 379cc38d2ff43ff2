// The connectivity check: what this network lets a call use, found out before the call starts.
//
// Why: WebRTC that cannot get through a corporate firewall shows up as silence. An RTCPeerConnection
// that only gathers candidates against the configured STUN/TURN servers tells, in a few seconds and
// without starting a voice session, whether UDP gets out (a server-reflexive candidate, or a TURN relay
// allocated over UDP), whether TURN over TLS on 443 works (a relay candidate whose relay protocol is
// "tls"), and a short WebSocket handshake to /ws/probe tells whether the fallback transport gets
// through the proxies in between. Candidate types and relayProtocol: W3C webrtc-pc,
// https://www.w3.org/TR/webrtc/#rtcicecandidate-interface and
// https://www.w3.org/TR/webrtc-stats/#dom-rtcicecandidatestats-relayprotocol.
//
// Everything below `runConnectivityCheck` is pure (unit-tested); the browser part only collects
// observations.

import type { TransportName } from "./transports";

export type CandidateType = "host" | "srflx" | "prflx" | "relay";
export type RelayProtocol = "udp" | "tcp" | "tls";

export interface GatheredCandidate {
  type: CandidateType;
  /** transport between this browser and the candidate's address (udp/tcp) */
  protocol: "udp" | "tcp";
  /** relay candidates only: how the browser reaches the TURN server */
  relayProtocol: RelayProtocol | null;
  /** ms since the check started */
  atMs: number;
}

export interface IceServerError {
  /** the STUN/TURN URL that failed (never with credentials: those are not part of a URL here) */
  url: string;
  errorCode: number;
  errorText: string;
  atMs: number;
}

export interface WebSocketProbe {
  reachable: boolean;
  ms: number;
  detail: string;
}

export interface ServerSummary {
  stun: string[];
  turnUdp: string[];
  turnTcp: string[];
  turnTls: string[];
}

export interface Observations {
  policy: RTCIceTransportPolicy;
  servers: ServerSummary;
  candidates: GatheredCandidate[];
  errors: IceServerError[];
  gatheringMs: number;
  /** false when the time limit ended gathering (an unreachable server keeps it open) */
  gatheringComplete: boolean;
  websocket: WebSocketProbe | null;
  transports: TransportName[];
  /** true when this browser has no RTCPeerConnection at all */
  noWebRtc?: boolean;
}

export type Verdict = "direct" | "relay-udp" | "relay-tls" | "relay-tcp" | "websocket" | "nothing";

export interface CheckResult {
  verdict: Verdict;
  /** one sentence for the guest */
  headline: string;
  /** true/false when tested, null when nothing configured could test it */
  udp: boolean | null;
  turnTls: boolean | null;
  websocket: boolean | null;
  /** which transport a call should use; null when nothing is known to work (try in the usual order) */
  transport: TransportName | null;
  observations: Observations;
}

export const VERDICT_TEXT: Record<Verdict, string> = {
  direct: "Direct connection works",
  "relay-udp": "Relayed over UDP works",
  "relay-tls": "Relayed over TLS (port 443) works",
  "relay-tcp": "Relayed over TCP works",
  websocket: "WebSocket only",
  nothing: "Nothing gets through",
};

/** Sort configured ICE server URLs by what they can test. `turn:` without `?transport=` is UDP (RFC 7065). */
export function summariseServers(servers: RTCIceServer[]): ServerSummary {
  const summary: ServerSummary = { stun: [], turnUdp: [], turnTcp: [], turnTls: [] };
  for (const server of servers) {
    const urls = Array.isArray(server.urls) ? server.urls : [server.urls];
    for (const raw of urls) {
      const url = String(raw).trim();
      const lower = url.toLowerCase();
      const transport = /[?&]transport=(udp|tcp)/.exec(lower)?.[1] ?? null;
      if (lower.startsWith("stun:") || lower.startsWith("stuns:")) summary.stun.push(url);
      else if (lower.startsWith("turns:")) summary.turnTls.push(url);
      else if (lower.startsWith("turn:")) (transport === "tcp" ? summary.turnTcp : summary.turnUdp).push(url);
    }
  }
  return summary;
}

function relayProtocolFromUrl(url: string | null | undefined): RelayProtocol | null {
  if (!url) return null;
  const lower = url.toLowerCase();
  if (lower.startsWith("turns:")) return "tls";
  if (lower.startsWith("turn:")) return /[?&]transport=tcp/.test(lower) ? "tcp" : "udp";
  return null;
}

/**
 * One gathered candidate from what the browser reports: the candidate fields where the browser fills
 * them, else the SDP candidate line (RFC 8839 §5.1: foundation component transport priority address
 * port "typ" type ...). The relay protocol comes from `relayProtocol`, else from the server URL the
 * candidate was gathered from (RTCPeerConnectionIceEvent.url).
 */
export function parseCandidate(
  input: { candidate: string; type?: string | null; protocol?: string | null; relayProtocol?: string | null },
  url: string | null,
  atMs: number,
): GatheredCandidate | null {
  const tokens = input.candidate.replace(/^a=/, "").trim().split(/\s+/);
  const typIndex = tokens.indexOf("typ");
  const type = (input.type ?? (typIndex >= 0 ? tokens[typIndex + 1] : undefined))?.toLowerCase();
  const protocol = (input.protocol ?? tokens[2])?.toLowerCase();
  if (type !== "host" && type !== "srflx" && type !== "prflx" && type !== "relay") return null;
  if (protocol !== "udp" && protocol !== "tcp") return null;
  let relayProtocol: RelayProtocol | null = null;
  if (type === "relay") {
    const given = input.relayProtocol?.toLowerCase();
    relayProtocol = given === "udp" || given === "tcp" || given === "tls" ? given : relayProtocolFromUrl(url);
  }
  return { type, protocol, relayProtocol, atMs };
}

function has(obs: Observations, type: CandidateType, relay?: RelayProtocol): boolean {
  return obs.candidates.some((c) => c.type === type && (relay === undefined || c.relayProtocol === relay));
}

/** What works and which transport to use, from what the check observed. */
export function assess(obs: Observations): CheckResult {
  const relayOnly = obs.policy === "relay";
  const canUdpTest = obs.servers.stun.length + obs.servers.turnUdp.length > 0;
  const udpSeen = has(obs, "srflx") || has(obs, "relay", "udp");
  const udp = udpSeen ? true : canUdpTest ? false : null;
  const turnTls = has(obs, "relay", "tls") ? true : obs.servers.turnTls.length > 0 ? false : null;
  const websocket = obs.websocket ? obs.websocket.reachable : null;
  const webrtcAllowed = obs.transports.includes("webrtc") && !obs.noWebRtc;
  const wsAllowed = obs.transports.includes("websocket");

  let verdict: Verdict;
  if (webrtcAllowed && !relayOnly && has(obs, "host") && udp !== false) verdict = "direct";
  else if (webrtcAllowed && has(obs, "relay", "udp")) verdict = "relay-udp";
  else if (webrtcAllowed && has(obs, "relay", "tls")) verdict = "relay-tls";
  else if (webrtcAllowed && has(obs, "relay", "tcp")) verdict = "relay-tcp";
  else if (websocket === true && wsAllowed) verdict = "websocket";
  else verdict = "nothing";

  let transport: TransportName | null;
  if (verdict === "websocket") transport = "websocket";
  else if (verdict === "nothing") transport = null;
  else transport = "webrtc";

  const headlines: Record<Verdict, string> = {
    direct:
      udp === null
        ? "Direct connection: your browser can reach the voice service on this network (no STUN/TURN server is configured to test beyond it)."
        : "Direct connection works: audio can go straight to the voice service over UDP.",
    "relay-udp": "Relayed over UDP works: audio goes through the relay server over UDP.",
    "relay-tls": "UDP is blocked, but relayed over TLS on port 443 works: audio goes through the relay server.",
    "relay-tcp": "UDP is blocked, but relayed over TCP works: audio goes through the relay server.",
    websocket: "WebSocket only: this network blocks WebRTC audio, so the call uses the WebSocket connection.",
    nothing: "Nothing gets through: neither WebRTC nor the WebSocket connection reached the voice service. Check your network or try another one.",
  };
  return { verdict, headline: headlines[verdict], udp, turnTls, websocket, transport, observations: obs };
}

function yesNo(value: boolean | null, untested: string): string {
  return value === null ? untested : value ? "yes" : "no";
}

function firstAt(obs: Observations, type: CandidateType, relay?: RelayProtocol): string {
  const found = obs.candidates.filter((c) => c.type === type && (relay === undefined || c.relayProtocol === relay));
  if (found.length === 0) return "0";
  return `${found.length} (first after ${Math.round(Math.min(...found.map((c) => c.atMs)))} ms)`;
}

/** Strip anything but scheme, host, port and transport from a server URL (defence in depth: no secrets). */
function safeUrl(url: string): string {
  const match = /^(stuns?|turns?):([^?\s]*)(\?transport=(udp|tcp))?/i.exec(url.trim());
  if (!match) return "(unrecognised URL)";
  const hostPort = match[2].replace(/^.*@/, "");
  return `${match[1]}:${hostPort}${match[3] ?? ""}`;
}

/**
 * The copyable text for support: candidate types, protocols, timings, browser. Never the TURN
 * username or credential, and no candidate addresses (they identify the guest's network).
 */
export function detailsText(
  result: CheckResult,
  env: { userAgent: string; origin: string; when: Date; during?: string | null },
): string {
  const obs = result.observations;
  const s = obs.servers;
  const list = (urls: string[]) => (urls.length ? urls.map(safeUrl).join(", ") : "none");
  const lines = [
    "Connectivity check",
    `Time: ${env.when.toISOString()}`,
    `Page: ${env.origin}`,
    `Browser: ${env.userAgent}`,
    `Result: ${VERDICT_TEXT[result.verdict]}`,
    `Transport for the call: ${result.transport === "webrtc" ? "WebRTC" : result.transport === "websocket" ? "WebSocket" : "none known to work (trying WebRTC, then WebSocket)"}`,
    ...(env.during ? [`In this call: ${env.during}`] : []),
    `ICE transport policy: ${obs.policy}`,
    `STUN servers: ${list(s.stun)}`,
    `TURN over UDP: ${list(s.turnUdp)}`,
    `TURN over TCP: ${list(s.turnTcp)}`,
    `TURN over TLS: ${list(s.turnTls)}`,
    `Candidates: host ${firstAt(obs, "host")}; srflx ${firstAt(obs, "srflx")}; relay/udp ${firstAt(obs, "relay", "udp")}; relay/tcp ${firstAt(obs, "relay", "tcp")}; relay/tls ${firstAt(obs, "relay", "tls")}`,
    `UDP gets out: ${yesNo(result.udp, "not tested (no STUN or TURN/UDP server configured)")}`,
    `TURN over TLS (443): ${yesNo(result.turnTls, "not tested (no turns: server configured)")}`,
    `WebSocket fallback: ${obs.websocket ? `${obs.websocket.reachable ? "reachable" : "not reachable"} after ${Math.round(obs.websocket.ms)} ms (${obs.websocket.detail})` : "not tested"}`,
    `ICE gathering: ${Math.round(obs.gatheringMs)} ms${obs.gatheringComplete ? "" : " (stopped at the time limit)"}${obs.noWebRtc ? " (this browser has no WebRTC)" : ""}`,
  ];
  for (const error of obs.errors) {
    lines.push(`Server error: ${safeUrl(error.url)} ${error.errorCode} ${error.errorText} after ${Math.round(error.atMs)} ms`);
  }
  return lines.join("\n");
}

// --- during a call: which path the WebRTC call actually uses (RTCPeerConnection.getStats) ----------

export interface RouteInfo {
  localType: CandidateType;
  protocol: string;
  relayProtocol: RelayProtocol | null;
}

type StatsEntry = Record<string, unknown> & { id: string; type: string };

/** The selected candidate pair's local candidate, from getStats() entries (webrtc-stats §7.x). */
export function selectedRoute(entries: StatsEntry[]): RouteInfo | null {
  const byId = new Map(entries.map((e) => [e.id, e]));
  const transport = entries.find((e) => e.type === "transport" && typeof e.selectedCandidatePairId === "string");
  const pair =
    (transport ? byId.get(transport.selectedCandidatePairId as string) : undefined) ??
    entries.find((e) => e.type === "candidate-pair" && e.state === "succeeded" && e.nominated === true);
  if (!pair) return null;
  const local = byId.get(pair.localCandidateId as string);
  if (!local) return null;
  const type = String(local.candidateType ?? "");
  if (type !== "host" && type !== "srflx" && type !== "prflx" && type !== "relay") return null;
  const relay = String(local.relayProtocol ?? "").toLowerCase();
  return {
    localType: type,
    protocol: String(local.protocol ?? ""),
    relayProtocol: type === "relay" && (relay === "udp" || relay === "tcp" || relay === "tls") ? relay : null,
  };
}

export function routeText(route: RouteInfo | null, transport: TransportName): string {
  if (transport === "websocket") return "WebSocket audio";
  if (!route) return "WebRTC (path not known yet)";
  if (route.localType === "relay") {
    const over = route.relayProtocol === "tls" ? "TLS" : route.relayProtocol === "tcp" ? "TCP" : "UDP";
    return `WebRTC relayed over ${over}`;
  }
  return `WebRTC direct (${route.localType} candidate over ${route.protocol.toUpperCase() || "UDP"})`;
}

// --- the browser part -------------------------------------------------------------------------------

export interface CheckOptions {
  iceServers: RTCIceServer[];
  iceTransportPolicy: RTCIceTransportPolicy;
  transports: TransportName[];
  /** upper bound for ICE gathering; an unreachable TURN server can keep gathering open far longer */
  gatherTimeoutMs?: number;
  probeTimeoutMs?: number;
  /** page URL the probe path is resolved against */
  pageUrl: string;
}

export const PROBE_PATH = "/ws/probe";

/** A WebSocket handshake to /ws/probe: the same host and /ws/ prefix as /ws/audio, without a voice session. */
export function probeWebSocket(pageUrl: string, timeoutMs: number): Promise<WebSocketProbe> {
  const started = performance.now();
  const url = new URL(PROBE_PATH, pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return new Promise((resolve) => {
    let socket: WebSocket;
    let settled = false;
    const finish = (reachable: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        socket.close(1000, "probe done");
      } catch {
        /* already closed */
      }
      resolve({ reachable, ms: performance.now() - started, detail });
    };
    const timer = setTimeout(() => finish(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    try {
      socket = new WebSocket(url.toString());
    } catch (error) {
      finish(false, error instanceof Error ? error.message : String(error));
      return;
    }
    socket.onmessage = (ev: MessageEvent) => {
      const ok = typeof ev.data === "string" && ev.data.includes('"probe"');
      finish(ok, ok ? "handshake and first message" : "unexpected answer");
    };
    socket.onclose = (ev: CloseEvent) => finish(false, `closed before answering (code ${ev.code})`);
  });
}

/** Gather candidates (no media, no session) and probe the WebSocket, both bounded; then assess. */
export async function runConnectivityCheck(opts: CheckOptions): Promise<CheckResult> {
  const gatherTimeoutMs = opts.gatherTimeoutMs ?? 4000;
  const servers = summariseServers(opts.iceServers);
  const probe = opts.transports.includes("websocket")
    ? probeWebSocket(opts.pageUrl, opts.probeTimeoutMs ?? 3000)
    : Promise.resolve(null);
  const started = performance.now();
  const base: Observations = {
    policy: opts.iceTransportPolicy,
    servers,
    candidates: [],
    errors: [],
    gatheringMs: 0,
    gatheringComplete: false,
    websocket: null,
    transports: opts.transports,
  };
  if (typeof RTCPeerConnection === "undefined") {
    return assess({ ...base, noWebRtc: true, websocket: await probe });
  }
  const pc = new RTCPeerConnection({ iceServers: opts.iceServers, iceTransportPolicy: opts.iceTransportPolicy });
  const gathered = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), gatherTimeoutMs);
    pc.onicecandidate = (ev: RTCPeerConnectionIceEvent) => {
      if (!ev.candidate || !ev.candidate.candidate) {
        clearTimeout(timer);
        resolve(true);
        return;
      }
      const c = ev.candidate as RTCIceCandidate & { relayProtocol?: string | null; url?: string | null };
      const parsed = parseCandidate(c, c.url ?? (ev as { url?: string | null }).url ?? null, performance.now() - started);
      if (parsed) base.candidates.push(parsed);
    };
    pc.onicecandidateerror = (ev: Event) => {
      const e = ev as RTCPeerConnectionIceErrorEvent;
      base.errors.push({ url: e.url, errorCode: e.errorCode, errorText: e.errorText, atMs: performance.now() - started });
    };
  });
  try {
    pc.createDataChannel("connectivity-check");
    await pc.setLocalDescription(await pc.createOffer());
    base.gatheringComplete = await gathered;
  } finally {
    base.gatheringMs = performance.now() - started;
    pc.close();
  }
  base.websocket = await probe;
  return assess(base);
}
