import { describe, expect, it } from "vitest";

import {
  type GatheredCandidate,
  type Observations,
  assess,
  detailsText,
  parseCandidate,
  routeText,
  selectedRoute,
  summariseServers,
} from "./connectivity";

const TURN = [
  { urls: ["stun:turn.example.com:3478"] },
  {
    urls: ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443?transport=tcp", "turn:turn.example.com:3478?transport=tcp"],
    username: "1767225600:abcdef0123456789",
    credential: "c2VjcmV0LWNyZWRlbnRpYWwtdmFsdWU=",
  },
];

function obs(candidates: Partial<GatheredCandidate>[], extra: Partial<Observations> = {}): Observations {
  return {
    policy: "relay",
    servers: summariseServers(TURN),
    candidates: candidates.map((c) => ({ type: "host", protocol: "udp", relayProtocol: null, atMs: 10, ...c })),
    errors: [],
    gatheringMs: 120,
    gatheringComplete: true,
    websocket: { reachable: true, ms: 12, detail: "handshake and first message" },
    transports: ["webrtc", "websocket"],
    ...extra,
  };
}

describe("server URLs", () => {
  it("sorts STUN and TURN URLs by what they test; turn: without transport is UDP", () => {
    const s = summariseServers([...TURN, { urls: "turn:other.example.com" }]);
    expect(s.stun).toEqual(["stun:turn.example.com:3478"]);
    expect(s.turnUdp).toEqual(["turn:turn.example.com:3478?transport=udp", "turn:other.example.com"]);
    expect(s.turnTcp).toEqual(["turn:turn.example.com:3478?transport=tcp"]);
    expect(s.turnTls).toEqual(["turns:turn.example.com:443?transport=tcp"]);
  });
});

describe("candidate parsing", () => {
  it("reads type and protocol from the SDP line when the fields are missing", () => {
    const c = parseCandidate({ candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 50123 typ srflx raddr 0.0.0.0 rport 0" }, null, 33);
    expect(c).toEqual({ type: "srflx", protocol: "udp", relayProtocol: null, atMs: 33 });
  });
  it("takes the relay protocol from relayProtocol, else from the TURN URL", () => {
    const line = "candidate:1 1 udp 8265471 198.51.100.2 61000 typ relay raddr 0.0.0.0 rport 0";
    expect(parseCandidate({ candidate: line, relayProtocol: "tls" }, null, 1)?.relayProtocol).toBe("tls");
    expect(parseCandidate({ candidate: line }, "turns:turn.example.com:443?transport=tcp", 1)?.relayProtocol).toBe("tls");
    expect(parseCandidate({ candidate: line }, "turn:turn.example.com:3478?transport=tcp", 1)?.relayProtocol).toBe("tcp");
    expect(parseCandidate({ candidate: line }, "turn:turn.example.com:3478", 1)?.relayProtocol).toBe("udp");
    expect(parseCandidate({ candidate: line }, null, 1)?.relayProtocol).toBeNull();
  });
  it("ignores what is not a candidate", () => {
    expect(parseCandidate({ candidate: "" }, null, 0)).toBeNull();
    expect(parseCandidate({ candidate: "candidate:1 1 sctp 1 1.2.3.4 5 typ host" }, null, 0)).toBeNull();
  });
});

describe("assessment", () => {
  it("direct: host candidates and UDP out, ICE policy all", () => {
    const r = assess(obs([{ type: "host" }, { type: "srflx" }], { policy: "all" }));
    expect(r.verdict).toBe("direct");
    expect(r.udp).toBe(true);
    expect(r.transport).toBe("webrtc");
  });
  it("direct but untested beyond the network when no STUN/TURN is configured (the standalone runtime)", () => {
    const r = assess(obs([{ type: "host" }], { policy: "all", servers: summariseServers([]) }));
    expect(r.verdict).toBe("direct");
    expect(r.udp).toBeNull();
    expect(r.turnTls).toBeNull();
    expect(r.headline).toMatch(/no STUN\/TURN server is configured/);
  });
  it("host candidates alone are not direct when a configured STUN server got no answer (UDP blocked)", () => {
    const r = assess(obs([{ type: "host" }, { type: "relay", protocol: "udp", relayProtocol: "tls" }], { policy: "all" }));
    expect(r.udp).toBe(false);
    expect(r.verdict).toBe("relay-tls");
  });
  it("relay policy: relayed over UDP when the TURN UDP allocation works", () => {
    const r = assess(obs([{ type: "relay", relayProtocol: "udp" }, { type: "relay", relayProtocol: "tls" }]));
    expect(r.verdict).toBe("relay-udp");
    expect(r.udp).toBe(true);
    expect(r.turnTls).toBe(true);
  });
  it("UDP blocked, TURN over TLS on 443 works", () => {
    const r = assess(obs([{ type: "relay", relayProtocol: "tls" }]));
    expect(r.verdict).toBe("relay-tls");
    expect(r.udp).toBe(false);
    expect(r.turnTls).toBe(true);
    expect(r.transport).toBe("webrtc");
    expect(r.headline).toMatch(/UDP is blocked.*TLS on port 443/);
  });
  it("relayed over TCP when only the plain TCP TURN allocation works", () => {
    expect(assess(obs([{ type: "relay", relayProtocol: "tcp" }])).verdict).toBe("relay-tcp");
  });
  it("WebSocket only: no candidate path, the probe answered - go straight to the WebSocket", () => {
    const r = assess(obs([]));
    expect(r.verdict).toBe("websocket");
    expect(r.transport).toBe("websocket");
    expect(r.turnTls).toBe(false);
  });
  it("host candidates under relay policy do not count as direct", () => {
    expect(assess(obs([{ type: "host" }])).verdict).toBe("websocket");
  });
  it("nothing: no candidate path and the probe failed; no transport is known to work", () => {
    const r = assess(obs([], { websocket: { reachable: false, ms: 3000, detail: "no answer within 3000 ms" } }));
    expect(r.verdict).toBe("nothing");
    expect(r.transport).toBeNull();
  });
  it("a working WebSocket probe does not count when the WebSocket transport is not offered", () => {
    expect(assess(obs([], { transports: ["webrtc"], websocket: null })).verdict).toBe("nothing");
  });
  it("a browser without WebRTC uses the WebSocket", () => {
    const r = assess(obs([], { noWebRtc: true, policy: "all" }));
    expect(r.verdict).toBe("websocket");
  });
});

describe("details text for support", () => {
  it("lists types, protocols, timings and browser, and never the TURN credentials", () => {
    const r = assess(obs([{ type: "relay", relayProtocol: "tls", atMs: 321.4 }], {
      errors: [{ url: "turn:turn.example.com:3478?transport=udp", errorCode: 701, errorText: "TURN allocate request timed out.", atMs: 3900 }],
    }));
    const text = detailsText(r, { userAgent: "Chromium/146", origin: "https://bistro.example.com", when: new Date("2026-12-02T00:00:00Z") });
    expect(text).toContain("Result: Relayed over TLS (port 443) works");
    expect(text).toContain("relay/tls 1 (first after 321 ms)");
    expect(text).toContain("relay/udp 0");
    expect(text).toContain("UDP gets out: no");
    expect(text).toContain("TURN over TLS (443): yes");
    expect(text).toContain("WebSocket fallback: reachable after 12 ms");
    expect(text).toContain("Browser: Chromium/146");
    expect(text).toContain("turns:turn.example.com:443?transport=tcp");
    expect(text).toContain("701 TURN allocate request timed out.");
    expect(text).not.toContain("c2VjcmV0LWNyZWRlbnRpYWwtdmFsdWU=");
    expect(text).not.toContain("abcdef0123456789");
  });
  it("drops user info a server URL might carry", () => {
    const r = assess(obs([], { servers: summariseServers([{ urls: "turns:user:pass@turn.example.com:443?transport=tcp" }]) }));
    const text = detailsText(r, { userAgent: "x", origin: "o", when: new Date(0) });
    expect(text).not.toContain("pass");
    expect(text).toContain("turns:turn.example.com:443?transport=tcp");
  });
});

describe("route of a call in progress", () => {
  const stats = [
    { id: "T1", type: "transport", selectedCandidatePairId: "CP1" },
    { id: "CP0", type: "candidate-pair", localCandidateId: "L0", state: "failed", nominated: false },
    { id: "CP1", type: "candidate-pair", localCandidateId: "L1", state: "succeeded", nominated: true },
    { id: "L0", type: "local-candidate", candidateType: "host", protocol: "udp" },
    { id: "L1", type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tls" },
  ];
  it("follows the transport's selected pair to its local candidate", () => {
    const route = selectedRoute(stats);
    expect(route).toEqual({ localType: "relay", protocol: "udp", relayProtocol: "tls" });
    expect(routeText(route, "webrtc")).toBe("WebRTC relayed over TLS");
  });
  it("names direct paths and the WebSocket", () => {
    const direct = selectedRoute([
      { id: "CP", type: "candidate-pair", localCandidateId: "L", state: "succeeded", nominated: true },
      { id: "L", type: "local-candidate", candidateType: "host", protocol: "udp" },
    ]);
    expect(routeText(direct, "webrtc")).toBe("WebRTC direct (host candidate over UDP)");
    expect(routeText(null, "websocket")).toBe("WebSocket audio");
    expect(selectedRoute([])).toBeNull();
  });
});
