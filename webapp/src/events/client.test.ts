import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { EventsClient, type EventsState, base64UrlEncode, type WebSocketLike } from "./client";

/** An in-memory WebSocket standing in for the gateway: records what the client sends. */
class FakeSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Record<string, unknown>[] = [];
  closed: { code?: number; reason?: string } | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
    this.readyState = 3;
  }

  // --- server side ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(message: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  ofType(type: string): Record<string, unknown>[] {
    return this.sent.filter((m) => m.type === type);
  }
}

function decodeHeader(protocol: string): Record<string, string> {
  const b64 = protocol.slice("header-".length).replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0))));
}

describe("EventsClient", () => {
  let sockets: FakeSocket[];
  let states: EventsState[];
  let token: string;

  const makeClient = () =>
    new EventsClient({
      url: "ws://127.0.0.1:8000/event/realtime",
      host: "127.0.0.1:8000",
      authorization: () => token,
      webSocket: (url, protocols) => {
        const socket = new FakeSocket(url, protocols);
        sockets.push(socket);
        return socket;
      },
      random: () => 0.5, // no jitter: delay = base
      initialBackoffMs: 100,
      maxBackoffMs: 1000,
      onState: (state) => states.push(state),
    });

  const connectAndAck = (client: EventsClient, timeoutMs = 10_000): FakeSocket => {
    client.connect();
    const socket = sockets[sockets.length - 1];
    socket.open();
    socket.receive({ type: "connection_ack", connectionTimeoutMs: timeoutMs });
    return socket;
  };

  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    states = [];
    token = "staff-secret";
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("authenticates with the AppSync subprotocols and sends connection_init", () => {
    const client = makeClient();
    client.connect();
    const socket = sockets[0];
    expect(socket.url).toBe("ws://127.0.0.1:8000/event/realtime");
    expect(socket.protocols[0]).toBe("aws-appsync-event-ws");
    expect(socket.protocols[1]).toMatch(/^header-[A-Za-z0-9_-]+$/); // base64url, no padding
    expect(decodeHeader(socket.protocols[1])).toEqual({ host: "127.0.0.1:8000", Authorization: "staff-secret" });
    socket.open();
    expect(socket.sent).toEqual([{ type: "connection_init" }]);
    expect(client.state).toBe("connecting");
    socket.receive({ type: "connection_ack", connectionTimeoutMs: 300000 });
    expect(client.state).toBe("connected");
  });

  it("base64url-encodes non-ASCII text without padding", () => {
    expect(base64UrlEncode("é?>")).toBe("w6k_Pg");
  });

  it("subscribes with an id and authorization, delivers parsed data frames", () => {
    const client = makeClient();
    const received: unknown[] = [];
    client.subscribe("restaurant-booking/*", (payload) => received.push(payload));
    const socket = connectAndAck(client);
    const [subscribe] = socket.ofType("subscribe");
    expect(subscribe).toMatchObject({
      channel: "/restaurant-booking/*",
      authorization: { host: "127.0.0.1:8000", Authorization: "staff-secret" },
    });
    expect(typeof subscribe.id).toBe("string");

    const payload = { type: "booking.created", eventId: "booking:b1:created", booking: { booking_id: "b1" } };
    socket.receive({ type: "data", id: subscribe.id, event: JSON.stringify(payload) });
    expect(received).toEqual([payload]);
  });

  it("drops duplicate eventIds, including across overlapping subscriptions", () => {
    const client = makeClient();
    const got: string[] = [];
    client.subscribe("/conversations/*", (p) => got.push(`wild:${String(p.eventId)}`));
    client.subscribe("/conversations/s1", (p) => got.push(`own:${String(p.eventId)}`));
    const socket = connectAndAck(client);
    const [wild, own] = socket.ofType("subscribe");
    const event = JSON.stringify({ type: "turn.added", eventId: "turn:s1:1", turn: {} });
    socket.receive({ type: "data", id: wild.id, event });
    socket.receive({ type: "data", id: own.id, event });
    socket.receive({ type: "data", id: wild.id, event }); // at-least-once redelivery
    socket.receive({ type: "data", id: wild.id, event: JSON.stringify({ type: "turn.added", eventId: "turn:s1:2" }) });
    expect(got).toEqual(["wild:turn:s1:1", "wild:turn:s1:2"]);
  });

  it("ignores malformed frames and data for unknown subscriptions", () => {
    const client = makeClient();
    const got: unknown[] = [];
    client.subscribe("/conversations/*", (p) => got.push(p));
    const socket = connectAndAck(client);
    const [sub] = socket.ofType("subscribe");
    socket.onmessage?.({ data: "not json" });
    socket.receive({ type: "data", id: sub.id, event: "{broken" });
    socket.receive({ type: "data", id: "nobody", event: JSON.stringify({ eventId: "x" }) });
    expect(got).toEqual([]);
    expect(client.state).toBe("connected");
  });

  it("unsubscribes by id and stops delivering", () => {
    const client = makeClient();
    const got: unknown[] = [];
    const sub = client.subscribe("/conversations/*", (p) => got.push(p));
    const socket = connectAndAck(client);
    sub.unsubscribe();
    expect(socket.ofType("unsubscribe")).toEqual([{ type: "unsubscribe", id: sub.id }]);
    socket.receive({ type: "data", id: sub.id, event: JSON.stringify({ eventId: "e1" }) });
    expect(got).toEqual([]);
  });

  it("renews subscriptions with the refreshed token: the new one first, the old one dropped once it is ready", () => {
    const client = makeClient();
    const got: string[] = [];
    const handle = client.subscribe("/restaurant-booking/*", (p) => got.push(String(p.eventId)));
    const socket = connectAndAck(client);
    const [first] = socket.ofType("subscribe");
    socket.receive({ type: "subscribe_success", id: first.id });

    token = "refreshed-token";
    client.renewSubscriptions();
    const [, second] = socket.ofType("subscribe");
    expect(second).toMatchObject({ channel: "/restaurant-booking/*", authorization: { Authorization: "refreshed-token" } });
    expect(second.id).not.toBe(first.id);
    expect(socket.ofType("unsubscribe")).toEqual([]); // the old one keeps delivering meanwhile
    socket.receive({ type: "data", id: first.id, event: JSON.stringify({ eventId: "e1" }) });

    socket.receive({ type: "subscribe_success", id: second.id });
    expect(socket.ofType("unsubscribe")).toEqual([{ type: "unsubscribe", id: first.id }]);
    socket.receive({ type: "data", id: second.id, event: JSON.stringify({ eventId: "e1" }) }); // both had it
    socket.receive({ type: "data", id: second.id, event: JSON.stringify({ eventId: "e2" }) });
    socket.receive({ type: "data", id: first.id, event: JSON.stringify({ eventId: "e3" }) }); // retired
    expect(got).toEqual(["e1", "e2"]);
    expect(handle.id).toBe(second.id);

    handle.unsubscribe();
    expect(socket.ofType("unsubscribe").at(-1)).toEqual({ type: "unsubscribe", id: second.id });
  });

  it("the old subscription ending at its token's expiry during a renewal is not an error", () => {
    const client = makeClient();
    const errors: unknown[] = [];
    client.subscribe("/conversations/*", () => undefined, { onError: (e) => errors.push(e) });
    const socket = connectAndAck(client);
    const [first] = socket.ofType("subscribe");
    token = "refreshed-token";
    client.renewSubscriptions();
    const [, second] = socket.ofType("subscribe");
    socket.receive({ type: "subscribe_error", id: first.id, errors: [{ errorType: "UnauthorizedException", message: "token expired" }] });
    expect(errors).toEqual([]);
    socket.receive({ type: "subscribe_success", id: second.id });
    expect(socket.ofType("unsubscribe")).toEqual([]); // nothing left to drop
    socket.receive({ type: "subscribe_error", id: second.id, errors: [{ errorType: "UnauthorizedException", message: "no" }] });
    expect(errors).toHaveLength(1);
  });

  it("renewing while disconnected does nothing; the reconnect subscribes with the current token", () => {
    const client = makeClient();
    client.subscribe("/conversations/*", () => undefined);
    const socket = connectAndAck(client);
    socket.drop();
    token = "refreshed-token";
    client.renewSubscriptions();
    vi.advanceTimersByTime(1000);
    sockets[1].open();
    sockets[1].receive({ type: "connection_ack", connectionTimeoutMs: 10000 });
    expect(sockets[1].ofType("subscribe")).toHaveLength(1);
    expect(sockets[1].ofType("subscribe")[0]).toMatchObject({ authorization: { Authorization: "refreshed-token" } });
  });

  it("reports subscribe_error and forgets the subscription", () => {
    const client = makeClient();
    const errors: unknown[] = [];
    client.subscribe("/conversations/*", () => undefined, { onError: (e) => errors.push(e) });
    const socket = connectAndAck(client);
    const [sub] = socket.ofType("subscribe");
    socket.receive({
      type: "subscribe_error",
      id: sub.id,
      errors: [{ errorType: "UnauthorizedException", message: "You are not authorized to make this call." }],
    });
    expect(errors).toEqual([[{ errorType: "UnauthorizedException", message: "You are not authorized to make this call." }]]);
    socket.drop();
    vi.advanceTimersByTime(1000);
    sockets[1].open();
    sockets[1].receive({ type: "connection_ack", connectionTimeoutMs: 10000 });
    expect(sockets[1].ofType("subscribe")).toEqual([]);
  });

  it("reconnects with growing backoff after the network drops and resubscribes the same ids", () => {
    const client = makeClient();
    client.subscribe("/restaurant-booking/*", () => undefined);
    const first = connectAndAck(client);
    const [original] = first.ofType("subscribe");

    first.drop();
    expect(client.state).toBe("reconnecting");
    vi.advanceTimersByTime(99);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1); // 100 ms: first retry
    expect(sockets).toHaveLength(2);
    token = "rotated-token"; // credentials are re-read on every reconnect
    sockets[1].drop(); // still offline
    vi.advanceTimersByTime(199);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1); // 200 ms: second retry
    expect(sockets).toHaveLength(3);

    sockets[2].open();
    sockets[2].receive({ type: "connection_ack", connectionTimeoutMs: 10000 });
    expect(client.state).toBe("connected");
    const [again] = sockets[2].ofType("subscribe");
    expect(again.id).toBe(original.id);
    expect(again.channel).toBe("/restaurant-booking/*");
    expect(decodeHeader(sockets[2].protocols[1]).Authorization).toBe("rotated-token");

    // after a successful ack the backoff starts again from the first step
    sockets[2].drop();
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(4);
  });

  it("treats a silent connection as lost once connectionTimeoutMs passes without ka", () => {
    const client = makeClient();
    client.subscribe("/conversations/*", () => undefined);
    const socket = connectAndAck(client, 5000);
    vi.advanceTimersByTime(4000);
    socket.receive({ type: "ka" }); // keeps it alive
    vi.advanceTimersByTime(4000);
    expect(socket.closed).toBeNull();
    vi.advanceTimersByTime(1001); // 5 s since the last ka: dead
    expect(socket.closed?.reason).toBe("keep-alive timeout");
    expect(client.state).toBe("reconnecting");
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
  });

  it("gives up (no reconnect loop) when the credential is refused", () => {
    token = "wrong";
    const client = makeClient();
    client.connect();
    sockets[0].open();
    sockets[0].receive({
      type: "connection_error",
      errors: [{ errorType: "UnauthorizedException", message: "You are not authorized to make this call.", errorCode: 401 }],
    });
    expect(client.state).toBe("unauthorized");
    sockets[0].drop(1000);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
  });

  it("close() stops reconnecting", () => {
    const client = makeClient();
    const socket = connectAndAck(client);
    client.close();
    expect(socket.closed?.code).toBe(1000);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
    expect(states.at(-1)).toBe("closed");
  });
});
