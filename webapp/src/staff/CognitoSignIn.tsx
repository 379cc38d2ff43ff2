// Staff sign-in against the Cognito user pool: the username/password form and the challenge steps
// (new password on first sign-in, TOTP code, TOTP set-up), then the bookings page with a StaffAccess
// backed by the StaffSession (session.ts).

import { type FormEvent, useMemo, useState, useSyncExternalStore } from "react";

import type { AppConfig, StaffAuthConfig } from "../config";
import { cognitoGateway } from "./cognito";
import { StaffSession } from "./session";
import { Bookings, type StaffAccess } from "./StaffView";

type CognitoAuth = Extract<StaffAuthConfig, { mode: "cognito" }>;

// One session per pool for the page's lifetime: it outlives the staff view (switching to the guest
// page and back keeps the sign-in, and its refresh timer keeps running), and React's StrictMode
// double mount cannot create two refreshing sessions.
const sessions = new Map<string, StaffSession>();

function sessionFor(auth: CognitoAuth, issuer: string): StaffSession {
  const key = `${auth.endpoint}|${auth.userPoolId}|${auth.clientId}`;
  let session = sessions.get(key);
  if (!session) {
    session = new StaffSession({
      gateway: cognitoGateway({ userPoolId: auth.userPoolId, clientId: auth.clientId, endpoint: auth.endpoint, issuer }),
      group: auth.group,
    });
    sessions.set(key, session);
  }
  return session;
}

export function CognitoStaff({ config, auth }: { config: AppConfig; auth: CognitoAuth }) {
  if (!auth.userPoolId || !auth.clientId || !auth.region) {
    return (
      <main className="staff signin">
        <p className="problem" role="alert">
          Staff sign-in is not configured on the server (the user pool or app client is missing). Ask an administrator.
        </p>
      </main>
    );
  }
  return <ConfiguredCognitoStaff config={config} session={sessionFor(auth, config.restaurantName)} />;
}

function ConfiguredCognitoStaff({ config, session }: { config: AppConfig; session: StaffSession }) {
  const state = useSyncExternalStore(session.subscribe, session.getState);
  const username = state.phase === "signedIn" ? state.username : null;
  const expiresAt = state.phase === "signedIn" ? state.expiresAt : 0;
  const stable = useMemo<StaffAccess | null>(
    () =>
      username === null
        ? null
        : {
            call: (fn) => session.call(fn),
            connectionKey: username,
            eventsAuthorization: session.accessToken,
            renew: () => session.ensureFresh(),
            who: username,
            onRefused: () => void session.signOut("The server no longer accepts your session. Sign in again."),
            onSignOut: () => void session.signOut(),
          },
    [session, username],
  );
  // A refresh changes only the version: the page keeps its data, the events renew their subscriptions.
  const access = useMemo(() => (stable ? { ...stable, credentialVersion: expiresAt } : null), [stable, expiresAt]);
  if (access) return <Bookings config={config} access={access} />;
  return <SignInSteps session={session} />;
}

function Problem({ text }: { text: string | null }) {
  return text ? (
    <p id="signin-problem" className="problem" role="alert" data-testid="signin-problem">
      {text}
    </p>
  ) : null;
}

function SignInSteps({ session }: { session: StaffSession }) {
  const state = useSyncExternalStore(session.subscribe, session.getState);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [newPassword, setNewPassword] = useState("");
  const [confirmation, setConfirmation] = useState("");
  const [code, setCode] = useState("");
  if (state.phase === "signedIn") return null;
  const busy = state.busy;
  const problem = state.problem;
  const described = problem ? "signin-problem" : undefined;

  const submit = (event: FormEvent, action: () => Promise<void>) => {
    event.preventDefault();
    if (!busy) void action();
  };
  const startOver = (
    <button type="button" className="button quiet" onClick={() => session.restart()} disabled={busy}>
      Start again
    </button>
  );

  if (state.phase === "newPassword") {
    return (
      <main className="staff signin" aria-labelledby="signin-title">
        <form className="card" onSubmit={(e) => submit(e, () => session.submitNewPassword(newPassword, confirmation))} noValidate>
          <h1 id="signin-title">Choose your password</h1>
          <p className="muted">You signed in with a temporary password. Choose your own to continue.</p>
          <input type="text" name="username" autoComplete="username" value={username} readOnly hidden />
          <label className="field">
            <span>New password</span>
            <input type="password" autoComplete="new-password" value={newPassword} onChange={(e) => setNewPassword(e.target.value)} aria-describedby={described} required />
          </label>
          <label className="field">
            <span>Repeat the new password</span>
            <input type="password" autoComplete="new-password" value={confirmation} onChange={(e) => setConfirmation(e.target.value)} aria-describedby={described} required />
          </label>
          <Problem text={problem} />
          <button type="submit" className="button primary" disabled={busy}>
            {busy ? "Saving…" : "Set password and sign in"}
          </button>
          {startOver}
        </form>
      </main>
    );
  }

  if (state.phase === "totp" || state.phase === "mfaSetup") {
    const setup = state.phase === "mfaSetup";
    return (
      <main className="staff signin" aria-labelledby="signin-title">
        <form
          className="card"
          onSubmit={(e) => submit(e, () => (setup ? session.submitMfaSetup(code) : session.submitTotp(code)))}
          noValidate
        >
          <h1 id="signin-title">{setup ? "Set up two-step sign-in" : "Enter your code"}</h1>
          {state.phase === "mfaSetup" ? (
            <>
              <p className="muted">
                Add this key to an authenticator app (for example by pasting it, or open the link on the phone that has the app), then enter the
                code it shows.
              </p>
              <p>
                <code data-testid="totp-secret">{state.secret.replace(/(.{4})/g, "$1 ").trim()}</code>
              </p>
              <p>
                <a href={state.uri}>Open in an authenticator app</a>
              </p>
            </>
          ) : (
            <p className="muted">Enter the 6-digit code from your authenticator app.</p>
          )}
          <label className="field">
            <span>Code</span>
            <input
              type="text"
              inputMode="numeric"
              autoComplete="one-time-code"
              pattern="[0-9]*"
              maxLength={7}
              value={code}
              onChange={(e) => setCode(e.target.value)}
              aria-describedby={described}
              required
            />
          </label>
          <Problem text={problem} />
          <button type="submit" className="button primary" disabled={busy}>
            {busy ? "Checking…" : "Verify"}
          </button>
          {startOver}
        </form>
      </main>
    );
  }

  return (
    <main className="staff signin" aria-labelledby="signin-title">
      <form className="card" onSubmit={(e) => submit(e, () => session.signIn(username, password))} noValidate>
        <h1 id="signin-title">Staff sign in</h1>
        <p className="muted">Bookings and conversations are visible to restaurant staff only.</p>
        {state.notice ? (
          <p className="notice" role="status" data-testid="signin-notice">
            {state.notice}
          </p>
        ) : null}
        <label className="field">
          <span>Username</span>
          <input
            type="text"
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            spellCheck={false}
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            aria-invalid={problem ? true : undefined}
            aria-describedby={described}
            required
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            type="password"
            name="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            aria-invalid={problem ? true : undefined}
            aria-describedby={described}
            required
          />
        </label>
        <Problem text={problem} />
        <button type="submit" className="button primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
