// Run-time configuration from GET /api/config. One build serves every environment (laptop, dev and
// prod stacks), so nothing environment-specific is baked in at build time. Every field is optional
// here: a missing or odd field falls back to what works against a standalone runtime on this origin.

export interface VoiceOption {
  id: string;
  label: string;
}

export interface AppConfig {
  iceServers: RTCIceServer[];
  iceTransportPolicy: RTCIceTransportPolicy;
  events: { http: string; realtime: string; host: string; auth: string | null };
  engine: string;
  voices: VoiceOption[];
  defaultVoice: string | null;
  transports: Array<"webrtc" | "websocket">;
  restaurantName: string;
  /** how long WebRTC may take to connect before the call moves to the WebSocket transport */
  iceConnectTimeoutMs: number;
  /** run the connectivity check on page load and let it choose the transport (`?precheck=off`: not) */
  precheck: boolean;
  /** the restaurant's IANA time zone: "today" on the staff page is the restaurant's day, not the browser's */
  timeZone: string;
  /** how staff sign in: the shared staff token (standalone) or the Cognito user pool (AWS) */
  staffAuth: StaffAuthConfig;
}

export type StaffAuthConfig =
  | { mode: "token" }
  | {
      mode: "cognito";
      region: string;
      userPoolId: string;
      clientId: string;
      /** the Cognito API endpoint: https://cognito-idp.<region>.amazonaws.com/ unless a local stand-in is named */
      endpoint: string;
      group: string;
    };

type Json = Record<string, unknown>;

function asObject(value: unknown): Json {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

function asString(value: unknown): string | null {
  return typeof value === "string" && value.trim() !== "" ? value : null;
}

/** Resolve a possibly relative URL against the page; map http(s) to ws(s) for the realtime socket. */
export function absoluteUrl(value: string, base: string, websocket = false): string {
  const url = new URL(value, base);
  if (websocket) {
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
  }
  return url.toString();
}

function parseVoices(value: unknown): VoiceOption[] {
  if (!Array.isArray(value)) return [];
  const voices: VoiceOption[] = [];
  for (const entry of value) {
    if (typeof entry === "string" && entry) {
      voices.push({ id: entry, label: entry.charAt(0).toUpperCase() + entry.slice(1) });
    } else {
      const obj = asObject(entry);
      const id = asString(obj.id) ?? asString(obj.voiceId) ?? asString(obj.name);
      if (id) {
        const extra = [asString(obj.language) ?? asString(obj.locale), asString(obj.gender)].filter(Boolean).join(", ");
        const label = asString(obj.label) ?? asString(obj.name) ?? id;
        voices.push({ id, label: extra ? `${label} (${extra})` : label });
      }
    }
  }
  return voices;
}

function parseIceServers(value: unknown): RTCIceServer[] {
  if (!Array.isArray(value)) return [];
  return value
    .map(asObject)
    .filter((s) => typeof s.urls === "string" || Array.isArray(s.urls))
    .map((s) => ({
      urls: s.urls as string | string[],
      ...(typeof s.username === "string" ? { username: s.username } : {}),
      ...(typeof s.credential === "string" ? { credential: s.credential } : {}),
    }));
}

/** A time zone this browser knows (Intl throws RangeError for others), else UTC like the runtime's default. */
export function validTimeZone(value: unknown): string {
  const zone = asString(value);
  if (!zone) return "UTC";
  try {
    new Intl.DateTimeFormat("en-CA", { timeZone: zone });
    return zone;
  } catch {
    return "UTC";
  }
}

/**
 * `staffAuth` from /api/config. An incomplete Cognito block is not guessed around: it falls back to
 * nothing usable rather than to the token box, because a runtime in Cognito mode refuses the shared token.
 */
export function parseStaffAuth(value: unknown): StaffAuthConfig {
  const auth = asObject(value);
  if (auth.mode !== "cognito") return { mode: "token" };
  const userPoolId = asString(auth.userPoolId) ?? "";
  const region = asString(auth.region) ?? userPoolId.split("_")[0] ?? "";
  const endpoint = asString(auth.endpoint) ?? `https://cognito-idp.${region}.amazonaws.com/`;
  return {
    mode: "cognito",
    region,
    userPoolId,
    clientId: asString(auth.clientId) ?? "",
    endpoint,
    group: asString(auth.group) ?? "staff",
  };
}

/**
 * Normalise the /api/config body. `search` (the page's query string) may override the ICE policy
 * and the transport: `?relay=only` forces relay-only ICE (with no reachable TURN server this makes
 * WebRTC fail, which is how the fallback is exercised end to end), `?transport=websocket` skips
 * WebRTC, `?iceTimeoutMs=` changes how long to wait before falling back, and `?precheck=off` keeps the
 * connectivity check from running on load and from choosing the transport (so the ICE-timeout fallback
 * itself can still be exercised).
 */
export function parseConfig(raw: unknown, pageUrl: string): AppConfig {
  const body = asObject(raw);
  const events = asObject(body.events);
  const page = new URL(pageUrl);
  const httpUrl = absoluteUrl(asString(events.http) ?? "/event", page.href);
  const realtimeUrl = absoluteUrl(asString(events.realtime) ?? "/event/realtime", page.href, true);
  const auth = asString(events.auth) ?? (typeof events.auth === "object" ? asString(asObject(events.auth).type) : null);

  const restaurant = asObject(body.restaurant);
  const voices = parseVoices(body.voices);
  const defaultVoice = asString(body.defaultVoice) ?? asString(body.voice) ?? voices[0]?.id ?? null;
  if (defaultVoice && !voices.some((v) => v.id === defaultVoice)) {
    voices.unshift({ id: defaultVoice, label: defaultVoice.charAt(0).toUpperCase() + defaultVoice.slice(1) });
  }

  let transports = (Array.isArray(body.transports) ? body.transports : ["webrtc", "websocket"]).filter(
    (t): t is "webrtc" | "websocket" => t === "webrtc" || t === "websocket",
  );
  if (transports.length === 0) transports = ["webrtc", "websocket"];
  const params = page.searchParams;
  if (params.get("transport") === "websocket") transports = ["websocket"];
  if (params.get("transport") === "webrtc") transports = ["webrtc"];

  let iceTransportPolicy: RTCIceTransportPolicy = body.iceTransportPolicy === "relay" ? "relay" : "all";
  if (params.get("relay") === "only") iceTransportPolicy = "relay";

  const timeoutParam = Number(params.get("iceTimeoutMs"));
  const timeoutConfig = Number(body.iceConnectTimeoutMs);
  const iceConnectTimeoutMs =
    Number.isFinite(timeoutParam) && timeoutParam > 0
      ? timeoutParam
      : Number.isFinite(timeoutConfig) && timeoutConfig > 0
        ? timeoutConfig
        : 6000;

  return {
    iceServers: parseIceServers(body.iceServers),
    iceTransportPolicy,
    events: { http: httpUrl, realtime: realtimeUrl, host: new URL(httpUrl).host, auth },
    engine: asString(body.engine) ?? "unknown",
    voices,
    defaultVoice,
    transports,
    restaurantName: asString(restaurant.name) ?? asString(body.restaurantName) ?? "Nova Bistro",
    iceConnectTimeoutMs,
    precheck: params.get("precheck") !== "off",
    timeZone: validTimeZone(restaurant.timeZone ?? body.timeZone),
    staffAuth: parseStaffAuth(body.staffAuth),
  };
}

export async function loadConfig(): Promise<AppConfig> {
  const response = await fetch("/api/config", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`configuration request failed (HTTP ${response.status})`);
  return parseConfig(await response.json(), window.location.href);
}
