import { describe, expect, it } from "vitest";

import { ApiFailure } from "../api";
import { type CognitoGateway, CognitoFailure, type SignInStep, type Tokens, describeFailure } from "./cognito";
import { type KeyValueStore, REFRESH_MARGIN_MS, REFRESH_RETRY_MS, STORAGE_KEY, StaffSession, claimsOf } from "./session";

const MINUTE = 60_000;
const T0 = Date.UTC(2030, 4, 1, 12, 0, 0);

function b64url(value: unknown): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(JSON.stringify(value))) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An unsigned JWT with Cognito access-token claims (the web app reads claims; it never verifies). */
function jwt(claims: Record<string, unknown>): string {
  return `${b64url({ alg: "RS256", kid: "k" })}.${b64url(claims)}.c2ln`;
}

function tokens(n: number, { iat = T0, lifetimeMs = 60 * MINUTE, groups = ["staff"], username = "maria" } = {}): Tokens {
  const access = jwt({
    token_use: "access",
    username,
    "cognito:groups": groups,
    iat: Math.floor(iat / 1000),
    exp: Math.floor((iat + lifetimeMs) / 1000),
    jti: `a${n}`,
  });
  return { accessToken: access, idToken: jwt({ token_use: "id", n }), refreshToken: `refresh-${n}` };
}

type Answer<T> = T | Error;

/** A gateway that answers from scripts and records what it was asked: the network is not the subject here. */
class ScriptedGateway implements CognitoGateway {
  calls: string[] = [];
  signInAnswers: Answer<SignInStep>[] = [];
  challengeAnswers: Answer<SignInStep>[] = [];
  refreshAnswers: Answer<Tokens>[] = [];
  signOutAnswers: Answer<undefined>[] = [];
  refreshGate: Promise<void> | null = null;
  signedOutWith: Tokens[] = [];

  private next<T>(queue: Answer<T>[], name: string): Promise<T> {
    const answer = queue.shift();
    if (answer === undefined) return Promise.reject(new Error(`unexpected ${name}`));
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  }
  signIn(username: string, password: string) {
    this.calls.push(`signIn ${username} ${password}`);
    return this.next(this.signInAnswers, "signIn");
  }
  completeNewPassword(password: string) {
    this.calls.push(`newPassword ${password}`);
    return this.next(this.challengeAnswers, "completeNewPassword");
  }
  sendTotp(code: string) {
    this.calls.push(`totp ${code}`);
    return this.next(this.challengeAnswers, "sendTotp");
  }
  verifyTotpSetup(code: string) {
    this.calls.push(`setup ${code}`);
    return this.next(this.challengeAnswers, "verifyTotpSetup");
  }
  async refresh(current: Tokens, username: string) {
    this.calls.push(`refresh ${current.refreshToken} ${username}`);
    if (this.refreshGate) await this.refreshGate;
    return this.next(this.refreshAnswers, "refresh");
  }
  signOut(current: Tokens) {
    this.calls.push("signOut");
    this.signedOutWith.push(current);
    return this.next(this.signOutAnswers.length ? this.signOutAnswers : [undefined], "signOut");
  }
}

class MemoryStore implements KeyValueStore {
  items = new Map<string, string>();
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
}

/** A hand-driven clock: timers fire only when the test advances time. */
class Clock {
  now = T0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  setTimer = (fn: () => void, ms: number) => {
    this.ids += 1;
    this.timers.push({ at: this.now + ms, fn, id: this.ids });
    return this.ids;
  };
  clearTimer = (id: unknown) => {
    this.timers = this.timers.filter((t) => t.id !== id);
  };
  pending(): number[] {
    return this.timers.map((t) => t.at - this.now);
  }
  async advance(ms: number) {
    this.now += ms;
    for (const timer of this.timers.filter((t) => t.at <= this.now)) {
      this.clearTimer(timer.id);
      timer.fn();
    }
    await flush();
  }
}

async function flush() {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
}

function setup(store: MemoryStore = new MemoryStore()) {
  const gateway = new ScriptedGateway();
  const clock = new Clock();
  const session = new StaffSession({
    gateway,
    group: "staff",
    storage: store,
    now: () => clock.now,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
  });
  return { gateway, clock, session, store };
}

const failure = (code: string, message = code) => Object.assign(new Error(message), { code });

describe("signing in", () => {
  it("signs in with a password and shows the username from the access token", async () => {
    const { gateway, session, store } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("  maria ", "Correct-horse-9");
    expect(gateway.calls).toEqual(["signIn maria Correct-horse-9"]);
    expect(session.getState()).toMatchObject({ phase: "signedIn", username: "maria", groups: ["staff"] });
    expect(session.accessToken()).toBe(tokens(1).accessToken);
    expect(JSON.parse(store.getItem(STORAGE_KEY) ?? "{}").tokens).toEqual(tokens(1));
  });

  it("keeps the form with a clear message on a wrong password", async () => {
    const { gateway, session, store } = setup();
    gateway.signInAnswers.push(failure("NotAuthorizedException", "Incorrect username or password."));
    await session.signIn("maria", "wrong");
    expect(session.getState()).toEqual({ phase: "signedOut", busy: false, problem: "Incorrect username or password.", notice: null });
    expect(store.items.size).toBe(0);
  });

  it("does not call Cognito without a username and password", async () => {
    const { gateway, session } = setup();
    await session.signIn(" ", "x");
    expect(gateway.calls).toEqual([]);
    expect(session.getState()).toMatchObject({ phase: "signedOut", problem: "Enter your username and password." });
  });

  it("is busy while Cognito answers", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    const seen: string[] = [];
    session.subscribe(() => {
      const s = session.getState();
      seen.push(`${s.phase}${"busy" in s && s.busy ? " busy" : ""}`);
    });
    await session.signIn("maria", "pw");
    expect(seen).toEqual(["signedOut busy", "signedIn"]);
  });

  it("asks a first-time user for a new password (NEW_PASSWORD_REQUIRED) and checks the repeat locally", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "newPassword" });
    await session.signIn("maria", "Temp-Pass-1");
    expect(session.getState()).toMatchObject({ phase: "newPassword", problem: null });

    await session.submitNewPassword("Mine-Own-Pass-2", "Mine-Own-Pass-3");
    expect(session.getState()).toMatchObject({ phase: "newPassword", problem: "The two passwords are not the same." });
    expect(gateway.calls).toEqual(["signIn maria Temp-Pass-1"]);

    gateway.challengeAnswers.push(failure("InvalidPasswordException", "Password does not conform to policy: Password not long enough"));
    await session.submitNewPassword("short", "short");
    expect(session.getState()).toMatchObject({ phase: "newPassword", problem: "That password is not allowed: Password not long enough" });

    gateway.challengeAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.submitNewPassword("Mine-Own-Pass-2", "Mine-Own-Pass-2");
    expect(gateway.calls.slice(1)).toEqual(["newPassword short", "newPassword Mine-Own-Pass-2"]);
    expect(session.getState()).toMatchObject({ phase: "signedIn", username: "maria" });
  });

  it("asks for the TOTP code (SOFTWARE_TOKEN_MFA); a wrong code keeps the step open", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "totp" });
    await session.signIn("maria", "pw");
    expect(session.getState().phase).toBe("totp");

    await session.submitTotp("12 34");
    expect(session.getState()).toMatchObject({ phase: "totp", problem: "Enter the 6-digit code from your authenticator app." });
    expect(gateway.calls).toHaveLength(1);

    gateway.challengeAnswers.push(failure("CodeMismatchException", "Invalid code received for user"));
    await session.submitTotp("123 456");
    expect(session.getState()).toMatchObject({ phase: "totp", problem: expect.stringContaining("That code is not right") });

    gateway.challengeAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.submitTotp("654321");
    expect(gateway.calls).toEqual(["signIn maria pw", "totp 123456", "totp 654321"]);
    expect(session.getState().phase).toBe("signedIn");
  });

  it("a challenge whose Cognito session expired starts over", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "totp" });
    await session.signIn("maria", "pw");
    gateway.challengeAnswers.push(failure("NotAuthorizedException", "Invalid session for the user, session is expired."));
    await session.submitTotp("123456");
    expect(session.getState()).toMatchObject({ phase: "signedOut", problem: "That took too long. Sign in again." });
  });

  it("sets up TOTP when MFA is required (MFA_SETUP): shows the secret, then verifies a code", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "mfaSetup", secret: "JBSWY3DPEHPK3PXP", uri: "otpauth://totp/x" });
    await session.signIn("maria", "pw");
    expect(session.getState()).toMatchObject({ phase: "mfaSetup", secret: "JBSWY3DPEHPK3PXP" });
    gateway.challengeAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.submitMfaSetup("111222");
    expect(gateway.calls).toEqual(["signIn maria pw", "setup 111222"]);
    expect(session.getState().phase).toBe("signedIn");
  });

  it("refuses a user outside the staff group and signs them out at Cognito", async () => {
    const { gateway, session, store } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1, { groups: ["kitchen"] }) });
    await session.signIn("maria", "pw");
    await flush();
    expect(session.getState()).toMatchObject({ phase: "signedOut", notice: expect.stringContaining('not in the "staff" group') });
    expect(gateway.calls).toEqual(["signIn maria pw", "signOut"]);
    expect(store.items.size).toBe(0);
    expect(session.accessToken()).toBe("");
  });
});

describe("refreshing", () => {
  it("refreshes five minutes before a 60-minute access token expires, then schedules the next", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    expect(clock.pending()).toEqual([60 * MINUTE - REFRESH_MARGIN_MS]);

    gateway.refreshAnswers.push({ ...tokens(2, { iat: T0 + 55 * MINUTE }), refreshToken: "" });
    await clock.advance(55 * MINUTE - 1);
    expect(gateway.calls).toEqual(["signIn maria pw"]);
    await clock.advance(1);
    expect(gateway.calls).toEqual(["signIn maria pw", "refresh refresh-1 maria"]);
    expect(session.accessToken()).toBe(tokens(2, { iat: T0 + 55 * MINUTE }).accessToken);
    expect(clock.pending()).toEqual([55 * MINUTE]);
    // Cognito returns no new refresh token on REFRESH_TOKEN_AUTH: the old one is kept.
    await clock.advance(55 * MINUTE);
    expect(gateway.calls.at(-1)).toBe("refresh refresh-1 maria");
  });

  it("refreshes short-lived tokens at four fifths of their lifetime", () => {
    expect(StaffSession.refreshDelay({ iat: 0, exp: 10 * MINUTE }, 0)).toBe(8 * MINUTE);
    expect(StaffSession.refreshDelay({ iat: 0, exp: 60 * MINUTE }, 58 * MINUTE)).toBe(0);
  });

  it("judges expiry on the server's clock when the browser's is off", async () => {
    const { gateway, clock, session } = setup();
    // The server is 10 minutes ahead of this browser: the token was issued "in the future".
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1, { iat: T0 + 10 * MINUTE }) });
    await session.signIn("maria", "pw");
    expect(clock.pending()).toEqual([55 * MINUTE]);
  });

  it("keeps the session through a network failure and tries again", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.refreshAnswers.push(new Error("Network error"));
    await clock.advance(55 * MINUTE);
    expect(session.getState().phase).toBe("signedIn");
    expect(clock.pending()).toEqual([REFRESH_RETRY_MS]);
    gateway.refreshAnswers.push(tokens(2, { iat: clock.now + REFRESH_RETRY_MS }));
    await clock.advance(REFRESH_RETRY_MS);
    expect(session.accessToken()).toBe(tokens(2, { iat: T0 + 55 * MINUTE + REFRESH_RETRY_MS }).accessToken);
  });

  it("signs out when the refresh token is refused (revoked, expired, user disabled)", async () => {
    const { gateway, clock, session, store } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.refreshAnswers.push(failure("NotAuthorizedException", "Refresh Token has been revoked"));
    await clock.advance(55 * MINUTE);
    expect(session.getState()).toEqual({ phase: "signedOut", busy: false, problem: null, notice: "Your session has ended. Sign in again." });
    expect(store.items.size).toBe(0);
    expect(clock.pending()).toEqual([]);
  });

  it("signs out when the network stays down until the access token has expired", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    for (let i = 0; i < 11; i += 1) gateway.refreshAnswers.push(new Error("Network error"));
    await clock.advance(55 * MINUTE);
    for (let i = 0; i < 10; i += 1) await clock.advance(REFRESH_RETRY_MS);
    expect(session.getState()).toMatchObject({ phase: "signedOut", notice: expect.stringContaining("could not be renewed") });
  });
});

describe("calling the API", () => {
  it("sends the access token; after a 401 refreshes once and retries with the new token", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.refreshAnswers.push(tokens(2));
    const seen: string[] = [];
    const result = await session.call(async (token) => {
      seen.push(token);
      if (token === tokens(1).accessToken) throw new ApiFailure(401, "unauthorized", "expired");
      return "bookings";
    });
    expect(result).toBe("bookings");
    expect(seen).toEqual([tokens(1).accessToken, tokens(2).accessToken]);
    expect(gateway.calls.filter((c) => c.startsWith("refresh"))).toHaveLength(1);
  });

  it("a second 401 signs out instead of looping", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.refreshAnswers.push(tokens(2));
    let calls = 0;
    await expect(
      session.call(async () => {
        calls += 1;
        throw new ApiFailure(401, "unauthorized", "no");
      }),
    ).rejects.toMatchObject({ status: 401 });
    expect(calls).toBe(2);
    expect(session.getState()).toMatchObject({ phase: "signedOut", notice: expect.stringContaining("no longer accepts") });
  });

  it("other errors pass through without a refresh", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    await expect(session.call(async () => Promise.reject(new ApiFailure(403, "forbidden", "not staff")))).rejects.toMatchObject({ status: 403 });
    expect(gateway.calls).toEqual(["signIn maria pw"]);
    expect(session.getState().phase).toBe("signedIn");
  });

  it("concurrent 401s share one refresh", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    let open!: () => void;
    gateway.refreshGate = new Promise((resolve) => (open = resolve));
    gateway.refreshAnswers.push(tokens(2));
    const api = async (token: string) => {
      if (token === tokens(1).accessToken) throw new ApiFailure(401, "unauthorized", "expired");
      return token;
    };
    const both = Promise.all([session.call(api), session.call(api)]);
    await flush();
    open();
    expect(await both).toEqual([tokens(2).accessToken, tokens(2).accessToken]);
    expect(gateway.calls.filter((c) => c.startsWith("refresh"))).toHaveLength(1);
  });

  it("refreshes before the call when the timer was late (a sleeping laptop)", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    clock.now += 61 * MINUTE; // time passed, the timer did not fire
    gateway.refreshAnswers.push(tokens(3, { iat: clock.now }));
    const seen: string[] = [];
    await session.call(async (token) => seen.push(token));
    expect(seen).toEqual([tokens(3, { iat: clock.now }).accessToken]);
  });

  it("ensureFresh refreshes only a token close to expiry (events refusals)", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    expect(await session.ensureFresh()).toBe(true);
    expect(gateway.calls).toEqual(["signIn maria pw"]);
    clock.now += 59.5 * MINUTE;
    gateway.refreshAnswers.push(tokens(2, { iat: clock.now }));
    expect(await session.ensureFresh()).toBe(true);
    expect(gateway.calls.at(-1)).toBe("refresh refresh-1 maria");
    expect(session.accessToken()).toBe(tokens(2, { iat: clock.now }).accessToken);
  });

  it("refuses to call when signed out", async () => {
    const { session } = setup();
    await expect(session.call(async () => "x")).rejects.toMatchObject({ status: 401 });
  });
});

describe("signing out", () => {
  it("forgets the tokens at once, then signs out at Cognito with them", async () => {
    const { gateway, clock, session, store } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    let done = false;
    const signingOut = session.signOut().then(() => (done = true));
    expect(session.getState()).toEqual({ phase: "signedOut", busy: false, problem: null, notice: null });
    expect(session.accessToken()).toBe("");
    expect(store.items.size).toBe(0);
    expect(clock.pending()).toEqual([]);
    await signingOut;
    expect(done).toBe(true);
    expect(gateway.signedOutWith).toEqual([tokens(1)]);
  });

  it("says so when Cognito could not be told", async () => {
    const { gateway, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.signOutAnswers.push(new Error("Network error"));
    await session.signOut();
    expect(session.getState()).toMatchObject({ phase: "signedOut", notice: expect.stringContaining("could not be told") });
  });

  it("a second sign-out keeps the notice that explains the first", async () => {
    const { gateway, clock, session } = setup();
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await session.signIn("maria", "pw");
    gateway.refreshAnswers.push(failure("NotAuthorizedException", "Refresh Token has been revoked"));
    await clock.advance(55 * MINUTE);
    await session.signOut();
    expect(session.getState()).toMatchObject({ notice: "Your session has ended. Sign in again." });
    expect(gateway.calls).not.toContain("signOut");
  });
});

describe("sessionStorage", () => {
  it("a reload restores the session and renews an expired token straight away", async () => {
    const first = setup();
    first.gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1) });
    await first.session.signIn("maria", "pw");

    const reloaded = setup(first.store);
    expect(reloaded.session.getState()).toMatchObject({ phase: "signedIn", username: "maria" });
    expect(reloaded.clock.pending()).toEqual([55 * MINUTE]);

    const later = new Clock();
    later.now = T0 + 70 * MINUTE;
    const gateway = new ScriptedGateway();
    const session = new StaffSession({ gateway, group: "staff", storage: first.store, now: () => later.now, setTimer: later.setTimer, clearTimer: later.clearTimer });
    expect(later.pending()).toEqual([0]);
    gateway.refreshAnswers.push(tokens(2, { iat: later.now }));
    await later.advance(0);
    expect(session.accessToken()).toBe(tokens(2, { iat: later.now }).accessToken);
  });

  it("ignores a damaged entry", () => {
    const store = new MemoryStore();
    store.setItem(STORAGE_KEY, '{"tokens": 3}');
    expect(setup(store).session.getState().phase).toBe("signedOut");
  });

  it("keeps tokens in memory only when there is no sessionStorage (never localStorage)", async () => {
    const gateway = new ScriptedGateway();
    const session = new StaffSession({ gateway, group: "staff", storage: null });
    gateway.signInAnswers.push({ kind: "signedIn", tokens: tokens(1, { iat: Date.now() }) });
    await session.signIn("maria", "pw");
    expect(session.getState().phase).toBe("signedIn");
    session.dispose();
  });
});

describe("claims and messages", () => {
  it("reads username, groups and times from an access token", () => {
    expect(claimsOf(tokens(1).accessToken)).toEqual({
      username: "maria",
      groups: ["staff"],
      iat: T0,
      exp: T0 + 60 * MINUTE,
      tokenUse: "access",
    });
    expect(() => claimsOf("not-a-jwt")).toThrow(CognitoFailure);
  });

  it("words Cognito's errors for the desk", () => {
    expect(describeFailure(failure("UserNotFoundException", "User does not exist.")).message).toBe("Incorrect username or password.");
    expect(describeFailure(failure("PasswordResetRequiredException")).message).toContain("reset");
    expect(describeFailure(new TypeError("Failed to fetch")).code).toBe("NetworkError");
    expect(describeFailure(failure("TooManyRequestsException")).message).toContain("Too many attempts");
    expect(describeFailure(failure("NotAuthorizedException", "Password attempts exceeded")).message).toContain("Too many failed attempts");
    expect(describeFailure(failure("NotAuthorizedException", "User is disabled.")).message).toContain("disabled");
    expect(describeFailure(failure("NotAuthorizedException", "Temporary password has expired and must be reset by an administrator.")).message).toContain(
      "temporary password has expired",
    );
    expect(describeFailure(failure("NotAuthorizedException", "Refresh Token has expired")).message).toBe("Your session has ended. Sign in again.");
    expect(describeFailure(failure("NotAuthorizedException", "Incorrect username or password.")).message).toBe("Incorrect username or password.");
  });
});
