// Staff sign-in with the Cognito user pool as a small state machine, independent of React and of the
// network (the Cognito calls come in through a CognitoGateway; the clock and timers are injectable), so
// challenges, refresh timing, the 401 retry and sign-out are unit-tested (session.test.ts).
//
// Where the tokens live: in memory, and a copy in sessionStorage so a reload does not sign the staff
// member out. Never localStorage: sessionStorage is per tab and is dropped when the tab closes, so a
// shared front-desk machine does not keep a session for the next person, and the tokens are not written
// to a profile that outlives the browser session. (Any script running in the page could read either, which
// is why the page loads no third-party scripts and the refresh token is short-lived.)
//
// Refresh: REFRESH_TOKEN_AUTH a little before the access token expires (REFRESH_MARGIN_MS, or a fifth
// of the lifetime for short-lived tokens), again on a 401 from the API once, and before a call when the
// timer was late (a sleeping laptop delays timers). Expiry is judged on the server's clock: the offset
// between the token's `iat` and the local clock at receipt is remembered.

import { ApiFailure } from "../api";
import { type CognitoGateway, CognitoFailure, type SignInStep, type Tokens, describeFailure } from "./cognito";

export const STORAGE_KEY = "concierge.staffSession";
export const REFRESH_MARGIN_MS = 5 * 60_000;
/** after a failed refresh that may be temporary (network): try again this much later */
export const REFRESH_RETRY_MS = 30_000;

export type SessionState =
  | { phase: "signedOut"; busy: boolean; problem: string | null; notice: string | null }
  | { phase: "newPassword"; busy: boolean; problem: string | null }
  | { phase: "totp"; busy: boolean; problem: string | null }
  | { phase: "mfaSetup"; busy: boolean; problem: string | null; secret: string; uri: string }
  | { phase: "signedIn"; username: string; groups: string[]; expiresAt: number };

export interface Claims {
  username: string;
  groups: string[];
  /** ms since the epoch, server clock */
  exp: number;
  iat: number;
  tokenUse: string;
}

/** Read (not verify: the runtime and AppSync do that) the claims of a JWT. */
export function claimsOf(jwt: string): Claims {
  const part = jwt.split(".")[1];
  if (!part) throw new CognitoFailure("BadToken", "The sign-in service returned a malformed token.");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const body = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  const username = typeof body.username === "string" ? body.username : typeof body["cognito:username"] === "string" ? (body["cognito:username"] as string) : "";
  const groups = Array.isArray(body["cognito:groups"]) ? body["cognito:groups"].filter((g): g is string => typeof g === "string") : [];
  return {
    username,
    groups,
    exp: Number(body.exp) * 1000,
    iat: Number(body.iat) * 1000,
    tokenUse: typeof body.token_use === "string" ? body.token_use : "",
  };
}

export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface SessionOptions {
  gateway: CognitoGateway;
  /** the group the runtime requires; a user outside it is told so instead of seeing 403s */
  group: string;
  storage?: KeyValueStore | null;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

interface Stored {
  tokens: Tokens;
  username: string;
  /** server clock minus local clock, ms */
  skew: number;
}

function browserSessionStorage(): KeyValueStore | null {
  try {
    return typeof sessionStorage === "undefined" ? null : sessionStorage;
  } catch {
    return null; // storage disabled: memory only
  }
}

export class StaffSession {
  private state: SessionState = { phase: "signedOut", busy: false, problem: null, notice: null };
  private current: Stored | null = null;
  private refreshing: Promise<boolean> | null = null;
  private timer: unknown = null;
  private readonly listeners = new Set<() => void>();
  private readonly gateway: CognitoGateway;
  private readonly group: string;
  private readonly storage: KeyValueStore | null;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private pendingUsername = "";

  constructor(options: SessionOptions) {
    this.gateway = options.gateway;
    this.group = options.group;
    this.storage = options.storage === undefined ? browserSessionStorage() : options.storage;
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>));
    this.restore();
  }

  // --- observing (React's useSyncExternalStore) ---

  getState = (): SessionState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private set(state: SessionState): void {
    this.state = state;
    for (const listener of this.listeners) listener();
  }

  /** The current access token (what the runtime and AppSync take), or null when signed out. */
  accessToken = (): string => this.current?.tokens.accessToken ?? "";

  // --- signing in ---

  async signIn(username: string, password: string): Promise<void> {
    const name = username.trim();
    if (!name || !password) {
      this.set({ phase: "signedOut", busy: false, problem: "Enter your username and password.", notice: null });
      return;
    }
    this.pendingUsername = name;
    await this.run({ phase: "signedOut", busy: true, problem: null, notice: null }, () => this.gateway.signIn(name, password));
  }

  async submitNewPassword(password: string, confirmation: string): Promise<void> {
    if (this.state.phase !== "newPassword") return;
    if (!password) return this.set({ ...this.state, problem: "Choose a new password." });
    if (password !== confirmation) return this.set({ ...this.state, problem: "The two passwords are not the same." });
    await this.run({ ...this.state, busy: true, problem: null }, () => this.gateway.completeNewPassword(password));
  }

  async submitTotp(code: string): Promise<void> {
    if (this.state.phase !== "totp") return;
    const digits = code.replace(/\s/g, "");
    if (!/^\d{6}$/.test(digits)) return this.set({ ...this.state, problem: "Enter the 6-digit code from your authenticator app." });
    await this.run({ ...this.state, busy: true, problem: null }, () => this.gateway.sendTotp(digits));
  }

  async submitMfaSetup(code: string): Promise<void> {
    if (this.state.phase !== "mfaSetup") return;
    const digits = code.replace(/\s/g, "");
    if (!/^\d{6}$/.test(digits)) return this.set({ ...this.state, problem: "Enter the 6-digit code your authenticator app shows." });
    await this.run({ ...this.state, busy: true, problem: null }, () => this.gateway.verifyTotpSetup(digits));
  }

  /** Abandon a challenge and go back to the username/password form. */
  restart(): void {
    this.set({ phase: "signedOut", busy: false, problem: null, notice: null });
  }

  private async run(busyState: SessionState, call: () => Promise<SignInStep>): Promise<void> {
    this.set(busyState);
    let next: SignInStep;
    try {
      next = await call();
    } catch (error) {
      const failure = describeFailure(error);
      const problem = failure.message;
      // A wrong code keeps the challenge open; a failed password sign-in stays on the form. A challenge
      // whose Cognito session expired (3 minutes) has to start again.
      const expired = failure.code === "NotAuthorizedException" && busyState.phase !== "signedOut";
      if (busyState.phase === "signedOut" || expired || busyState.phase === "signedIn") {
        this.set({ phase: "signedOut", busy: false, problem: expired ? "That took too long. Sign in again." : problem, notice: null });
      } else {
        this.set({ ...busyState, busy: false, problem });
      }
      return;
    }
    switch (next.kind) {
      case "newPassword":
        return this.set({ phase: "newPassword", busy: false, problem: null });
      case "totp":
        return this.set({ phase: "totp", busy: false, problem: null });
      case "mfaSetup":
        return this.set({ phase: "mfaSetup", busy: false, problem: null, secret: next.secret, uri: next.uri });
      case "signedIn":
        return this.accept(next.tokens, this.pendingUsername);
    }
  }

  private accept(tokens: Tokens, enteredName: string, skew?: number): void {
    let claims: Claims;
    try {
      claims = claimsOf(tokens.accessToken);
    } catch (error) {
      this.set({ phase: "signedOut", busy: false, problem: describeFailure(error).message, notice: null });
      return;
    }
    if (!claims.groups.includes(this.group)) {
      // The runtime would answer every call with 403; say why once instead.
      this.current = { tokens, username: claims.username || enteredName, skew: 0 };
      void this.signOut(`You signed in, but your account is not in the "${this.group}" group. Ask an administrator.`);
      return;
    }
    const measuredSkew = Number.isFinite(claims.iat) ? claims.iat - this.now() : 0;
    this.current = { tokens, username: claims.username || enteredName, skew: skew ?? measuredSkew };
    this.persist();
    this.schedule(claims);
    this.set({ phase: "signedIn", username: this.current.username, groups: claims.groups, expiresAt: claims.exp });
  }

  // --- refreshing ---

  private serverNow(): number {
    return this.now() + (this.current?.skew ?? 0);
  }

  /** When to refresh: REFRESH_MARGIN_MS before expiry, or a fifth of the lifetime if that is shorter. */
  static refreshDelay(claims: Pick<Claims, "exp" | "iat">, serverNow: number): number {
    const lifetime = Math.max(0, claims.exp - claims.iat);
    const margin = Math.min(REFRESH_MARGIN_MS, lifetime / 5);
    return Math.max(0, claims.exp - margin - serverNow);
  }

  private schedule(claims: Claims, delay = StaffSession.refreshDelay(claims, this.serverNow())): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = this.setTimer(() => {
      this.timer = null;
      void this.refresh();
    }, delay);
  }

  /**
   * REFRESH_TOKEN_AUTH now (one at a time: concurrent callers share it). True when new tokens arrived.
   * A refused refresh token (expired, revoked by a sign-out elsewhere, user disabled) signs out; a
   * network failure keeps the session and tries again shortly.
   */
  refresh(): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    const stored = this.current;
    if (!stored) return Promise.resolve(false);
    this.refreshing = (async () => {
      try {
        const fresh = await this.gateway.refresh(stored.tokens, stored.username);
        if (this.current !== stored) return false; // signed out meanwhile
        this.accept({ ...fresh, refreshToken: fresh.refreshToken || stored.tokens.refreshToken }, stored.username);
        return this.current !== null;
      } catch (error) {
        const failure = describeFailure(error);
        if (this.current !== stored) return false;
        if (failure.code === "NotAuthorizedException") {
          this.endLocally("Your session has ended. Sign in again.");
        } else {
          const claims = claimsOf(stored.tokens.accessToken);
          if (this.serverNow() >= claims.exp) this.endLocally("Your session has ended and could not be renewed. Sign in again.");
          else this.schedule(claims, REFRESH_RETRY_MS);
        }
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /**
   * Make sure the access token has more than `minMs` left (server clock), refreshing only if not.
   * For the events connection: a refusal with a fresh token is not cured by another refresh.
   */
  async ensureFresh(minMs = 60_000): Promise<boolean> {
    const stored = this.current;
    if (!stored) return false;
    if (claimsOf(stored.tokens.accessToken).exp - this.serverNow() > minMs) return true;
    return this.refresh();
  }

  /**
   * Run a staff API call with the access token. If the token has expired by the server's clock (a
   * late timer), refresh first; on a 401, refresh once and retry once; a second 401 signs out.
   */
  async call<T>(fn: (token: string) => Promise<T>): Promise<T> {
    const stored = this.current;
    if (!stored) throw new ApiFailure(401, "signed_out", "You are signed out. Sign in again.");
    if (this.serverNow() >= claimsOf(stored.tokens.accessToken).exp) await this.refresh();
    const token = this.accessToken();
    if (!token) throw new ApiFailure(401, "signed_out", "Your session has ended. Sign in again.");
    try {
      return await fn(token);
    } catch (error) {
      if (!(error instanceof ApiFailure && error.status === 401)) throw error;
    }
    // The token was refused: it may have expired in flight or been rotated; renew once.
    if (!(await this.refresh())) {
      throw new ApiFailure(401, "signed_out", "Your session has ended. Sign in again.");
    }
    try {
      return await fn(this.accessToken());
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 401) {
        this.endLocally("The server no longer accepts your session. Sign in again.");
      }
      throw error;
    }
  }

  // --- signing out ---

  /**
   * Forget the tokens here at once (the form is back before the network answers), then ask Cognito to
   * revoke the refresh token (RevokeToken; GlobalSignOut where revocation is off): nobody holding a copy
   * can renew the session. An access token already issued stays valid until it expires (at most its lifetime, 60
   * minutes): the runtime and AppSync verify JWTs locally and do not see revocations. Resolves when
   * Cognito has answered (errors are reported as a notice, not thrown).
   */
  async signOut(notice: string | null = null): Promise<void> {
    const stored = this.current;
    if (!stored) return; // already signed out: keep whatever notice says why
    this.endLocally(notice);
    try {
      await this.gateway.signOut(stored.tokens, stored.username);
    } catch (error) {
      const failure = describeFailure(error);
      if (failure.code === "NotAuthorizedException") return; // already revoked or expired: nothing to end
      if (this.state.phase === "signedOut" && !this.state.problem) {
        this.set({
          ...this.state,
          notice: `${notice ? `${notice} ` : ""}Signed out on this device, but the sign-in service could not be told (${failure.message}).`,
        });
      }
    }
  }

  private endLocally(notice: string | null): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    this.current = null;
    try {
      this.storage?.removeItem(STORAGE_KEY);
    } catch {
      /* nothing stored */
    }
    this.set({ phase: "signedOut", busy: false, problem: null, notice });
  }

  /** Stop the refresh timer (the component using the session unmounted). */
  dispose(): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  // --- sessionStorage ---

  private persist(): void {
    if (!this.current) return;
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(this.current));
    } catch {
      /* full or disabled: memory only */
    }
  }

  private restore(): void {
    let stored: Stored | null = null;
    try {
      const raw = this.storage?.getItem(STORAGE_KEY);
      if (raw) {
        const parsed = JSON.parse(raw) as Partial<Stored>;
        const t = parsed.tokens;
        if (t && typeof t.accessToken === "string" && typeof t.idToken === "string" && typeof t.refreshToken === "string" && typeof parsed.username === "string") {
          stored = { tokens: t, username: parsed.username, skew: Number(parsed.skew) || 0 };
        }
      }
    } catch {
      stored = null;
    }
    if (!stored) return;
    // An expired access token is still restored: the refresh scheduled at 0 ms (or the first call) renews it.
    this.accept(stored.tokens, stored.username, stored.skew);
  }
}
