// A small AppSync Events WebSocket client (protocol: https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html ; docs/events-gateway.md).
//
// Why hand-written instead of Amplify's `events.connect()`: Amplify derives the realtime URL from the
// HTTP endpoint and forces the scheme to wss://, so it cannot reach the runtime's embedded gateway at
// ws://127.0.0.1:8000/event/realtime (standalone mode has no TLS). The protocol is small - handshake,
// keep-alive, subscribe/unsubscribe, data frames - and the same client then talks to the embedded
// gateway and to the AppSync Events API in the cloud.
//
// Behaviour:
// - auth travels as the `header-<base64url(JSON{host, Authorization})>` subprotocol and again in each
//   subscribe message's `authorization` object;
// - `connection_init` -> `connection_ack{connectionTimeoutMs}`; no `ka`/data within that time means
//   the network is gone: the socket is dropped and re-opened with jittered exponential backoff;
// - subscriptions survive reconnects (re-sent after each ack with their ids);
// - `data.event` is a JSON string: parsed, then de-duplicated by `payload.eventId` because delivery
//   is at least once (cloud Lambda retries, and a wildcard plus an exact subscription can overlap).

export type EventsState = "idle" | "connecting" | "connected" | "reconnecting" | "closed" | "unauthorized";

/** The subset of the browser WebSocket the client uses, so tests can pass a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

export interface EventsClientOptions {
  /** ws:// or wss:// URL of the realtime endpoint, e.g. ws://127.0.0.1:8000/event/realtime */
  url: string;
  /** value of the `host` header entry: the HTTP domain of the Events API */
  host: string;
  /** the staff token or a guest sessionToken; re-read on every (re)connect */
  authorization: () => string;
  webSocket?: WebSocketFactory;
  /** first reconnect delay; doubles up to maxBackoffMs, with +-50 % jitter */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** how long to wait for connection_ack after the socket opens */
  ackTimeoutMs?: number;
  random?: () => number;
  onState?: (state: EventsState, detail?: string) => void;
  /** how many eventIds to remember for de-duplication */
  dedupeWindow?: number;
}

export interface EventsError {
  errorType: string;
  message: string;
}

export interface Subscription {
  readonly id: string;
  readonly channel: string;
  unsubscribe(): void;
}

interface SubscriptionEntry {
  /** the id of its current subscribe; a renewal gives it a new one */
  id: string;
  /** while a renewal is in flight: the id of the subscription it replaces */
  previousId?: string;
  channel: string;
  onEvent: (payload: Record<string, unknown>) => void;
  onError?: (errors: EventsError[]) => void;
  onReady?: () => void;
}

const SUBPROTOCOL = "aws-appsync-event-ws";
const DEFAULT_CONNECTION_TIMEOUT_MS = 300_000;
const WS_OPEN = 1;
const UNAUTHORIZED = new Set(["UnauthorizedException", "Unauthorized", "NotAuthorizedException"]);

/** base64url of UTF-8 text without padding, as the `header-` subprotocol requires. */
export function base64UrlEncode(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function authSubprotocol(host: string, authorization: string): string {
  return "header-" + base64UrlEncode(JSON.stringify({ host, Authorization: authorization }));
}

let idCounter = 0;
function newId(): string {
  idCounter += 1;
  const random = globalThis.crypto?.randomUUID?.();
  return random ?? `sub-${Date.now().toString(36)}-${idCounter}`;
}

function errorsOf(message: Record<string, unknown>): EventsError[] {
  const raw = Array.isArray(message.errors) ? message.errors : [];
  return raw.map((e: unknown) => {
    const entry = (typeof e === "object" && e !== null ? e : {}) as Record<string, unknown>;
    return {
      errorType: typeof entry.errorType === "string" ? entry.errorType : "Error",
      message: typeof entry.message === "string" ? entry.message : "unknown error",
    };
  });
}

export function isUnauthorized(errors: EventsError[]): boolean {
  return errors.some((e) => UNAUTHORIZED.has(e.errorType) || /token expired/i.test(e.message));
}

export class EventsClient {
  private readonly opts: Required<Omit<EventsClientOptions, "onState">> & Pick<EventsClientOptions, "onState">;
  private socket: WebSocketLike | null = null;
  private readonly subs = new Map<string, SubscriptionEntry>();
  /** subscriptions being replaced by a renewal, by their old id: still delivering until the new one is ready */
  private readonly retiring = new Map<string, SubscriptionEntry>();
  private readonly seen = new Set<string>();
  private kaTimer: ReturnType<typeof setTimeout> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectionTimeoutMs = DEFAULT_CONNECTION_TIMEOUT_MS;
  private attempt = 0;
  private acked = false;
  private stopped = true;
  private _state: EventsState = "idle";

  constructor(options: EventsClientOptions) {
    this.opts = {
      webSocket: (url, protocols) => new WebSocket(url, protocols) as unknown as WebSocketLike,
      initialBackoffMs: 500,
      maxBackoffMs: 15_000,
      ackTimeoutMs: 15_000,
      random: Math.random,
      dedupeWindow: 2000,
      ...options,
    };
  }

  get state(): EventsState {
    return this._state;
  }

  /** Open the connection (idempotent). Subscriptions may be added before or after. */
  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  /** Close for good: no reconnect, subscriptions dropped. */
  close(): void {
    this.stopped = true;
    this.clearTimers();
    this.subs.clear();
    this.retiring.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      this.detach(socket);
      socket.close(1000, "client closed");
    }
    this.setState("closed");
  }

  subscribe(
    channel: string,
    onEvent: (payload: Record<string, unknown>) => void,
    handlers: { onError?: (errors: EventsError[]) => void; onReady?: () => void } = {},
  ): Subscription {
    const normalized = channel.startsWith("/") ? channel : `/${channel}`;
    const entry: SubscriptionEntry = { id: newId(), channel: normalized, onEvent, ...handlers };
    this.subs.set(entry.id, entry);
    if (this.acked) this.sendSubscribe(entry);
    return {
      get id() {
        return entry.id; // changes when renewSubscriptions() replaces the subscription
      },
      channel: normalized,
      unsubscribe: () => this.unsubscribe(entry),
    };
  }

  private unsubscribe(entry: SubscriptionEntry): void {
    if (entry.previousId !== undefined) this.retire(entry);
    if (!this.subs.delete(entry.id)) return;
    if (this.acked) this.send({ type: "unsubscribe", id: entry.id });
  }

  /**
   * Subscribe every channel again with the current `authorization()` (call it after the credential was
   * refreshed): a subscription is authorized with the token it was made with, and a gateway may end it
   * when that token expires. The new subscription is made before the old one is dropped, so no event
   * falls into a gap (an event both deliver is dropped by its eventId). Not connected: nothing to do,
   * the next connection subscribes with the current credential anyway.
   */
  renewSubscriptions(): void {
    if (!this.acked) return;
    for (const entry of [...this.subs.values()]) {
      if (entry.previousId !== undefined) this.retire(entry); // a renewal still in flight: replace it
      this.subs.delete(entry.id);
      this.retiring.set(entry.id, entry);
      entry.previousId = entry.id;
      entry.id = newId();
      this.subs.set(entry.id, entry);
      this.sendSubscribe(entry);
    }
  }

  /** Drop the subscription a renewal replaced. */
  private retire(entry: SubscriptionEntry): void {
    const old = entry.previousId;
    entry.previousId = undefined;
    if (old === undefined || !this.retiring.delete(old)) return;
    if (this.acked) this.send({ type: "unsubscribe", id: old });
  }

  private open(): void {
    this.acked = false;
    // A new connection subscribes every entry afresh under its current id: renewals in flight are moot.
    this.retiring.clear();
    for (const entry of this.subs.values()) entry.previousId = undefined;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let socket: WebSocketLike;
    try {
      socket = this.opts.webSocket(this.opts.url, [
        SUBPROTOCOL,
        authSubprotocol(this.opts.host, this.opts.authorization()),
      ]);
    } catch (error) {
      this.scheduleReconnect(String(error));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.send({ type: "connection_init" });
      this.armKeepAlive(this.opts.ackTimeoutMs);
    };
    socket.onmessage = (ev) => this.onMessage(ev.data);
    socket.onerror = () => {
      /* a close event always follows; reconnect is handled there */
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.acked = false;
      this.clearKeepAlive();
      if (!this.stopped && this._state !== "unauthorized") this.scheduleReconnect(ev.reason || `closed (${ev.code ?? "?"})`);
    };
  }

  private onMessage(data: unknown): void {
    if (typeof data !== "string") return;
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(data);
      if (typeof parsed !== "object" || parsed === null) return;
      message = parsed as Record<string, unknown>;
    } catch {
      return;
    }
    // Any frame proves the link is alive (before the ack, the ack timeout keeps running).
    if (this.acked) this.armKeepAlive();
    const id = typeof message.id === "string" ? message.id : undefined;
    switch (message.type) {
      case "connection_ack": {
        const timeout = Number(message.connectionTimeoutMs);
        this.connectionTimeoutMs = Number.isFinite(timeout) && timeout > 0 ? timeout : DEFAULT_CONNECTION_TIMEOUT_MS;
        this.acked = true;
        this.attempt = 0;
        this.armKeepAlive();
        this.setState("connected");
        for (const entry of this.subs.values()) this.sendSubscribe(entry);
        break;
      }
      case "connection_error": {
        const errors = errorsOf(message);
        if (isUnauthorized(errors)) {
          this.setState("unauthorized", errors[0]?.message);
          this.stopped = true;
          this.socket?.close(1000, "unauthorized");
        } else {
          this.socket?.close(4000, "connection_error");
        }
        break;
      }
      case "ka":
        break;
      case "subscribe_success": {
        const entry = id ? this.subs.get(id) : undefined;
        if (entry) {
          this.retire(entry);
          entry.onReady?.();
        }
        break;
      }
      case "subscribe_error": {
        if (id && this.retiring.has(id)) {
          // The replaced subscription ended (its token expired) before the renewal was confirmed: the
          // renewal carries on; an error of the renewal itself is reported below.
          const entry = this.retiring.get(id);
          this.retiring.delete(id);
          if (entry && entry.previousId === id) entry.previousId = undefined;
          break;
        }
        const entry = id ? this.subs.get(id) : undefined;
        if (entry) {
          this.subs.delete(entry.id);
          if (entry.previousId !== undefined) this.retire(entry);
          entry.onError?.(errorsOf(message));
        }
        break;
      }
      case "data": {
        const entry = id ? (this.subs.get(id) ?? this.retiring.get(id)) : undefined;
        if (!entry || typeof message.event !== "string") break;
        let payload: unknown;
        try {
          payload = JSON.parse(message.event);
        } catch {
          break;
        }
        if (typeof payload !== "object" || payload === null) break;
        const record = payload as Record<string, unknown>;
        if (typeof record.eventId === "string") {
          if (this.seen.has(record.eventId)) break;
          this.remember(record.eventId);
        }
        entry.onEvent(record);
        break;
      }
      case "broadcast_error": {
        const entry = id ? (this.subs.get(id) ?? this.retiring.get(id)) : undefined;
        entry?.onError?.(errorsOf(message));
        break;
      }
      default:
        break; // unsubscribe_success, publish_* and unknown types need no action
    }
  }

  private remember(eventId: string): void {
    this.seen.add(eventId);
    if (this.seen.size > this.opts.dedupeWindow) {
      // Sets iterate in insertion order: drop the oldest.
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private sendSubscribe(entry: SubscriptionEntry): void {
    this.send({
      type: "subscribe",
      id: entry.id,
      channel: entry.channel,
      authorization: { host: this.opts.host, Authorization: this.opts.authorization() },
    });
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket && this.socket.readyState === WS_OPEN) this.socket.send(JSON.stringify(message));
  }

  private armKeepAlive(timeoutMs: number = this.connectionTimeoutMs): void {
    this.clearKeepAlive();
    this.kaTimer = setTimeout(() => {
      // No ka/data within connectionTimeoutMs: treat the link as dead (e.g. laptop lid, Wi-Fi drop).
      const socket = this.socket;
      if (!socket) return;
      this.socket = null;
      this.acked = false;
      this.detach(socket);
      socket.close(4001, "keep-alive timeout");
      this.scheduleReconnect("keep-alive timeout");
    }, timeoutMs);
  }

  private scheduleReconnect(detail: string): void {
    if (this.stopped) return;
    this.clearTimers();
    const base = Math.min(this.opts.maxBackoffMs, this.opts.initialBackoffMs * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + this.opts.random()));
    this.attempt += 1;
    this.setState("reconnecting", detail);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  private detach(socket: WebSocketLike): void {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
  }

  private clearKeepAlive(): void {
    if (this.kaTimer !== null) clearTimeout(this.kaTimer);
    this.kaTimer = null;
  }

  private clearTimers(): void {
    this.clearKeepAlive();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private setState(state: EventsState, detail?: string): void {
    this._state = state;
    this.opts.onState?.(state, detail);
  }
}
