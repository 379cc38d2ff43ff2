// The staff page: sign in, the chosen day's bookings and the conversations, both kept live by the events
// channels. Two ways to sign in, chosen by /api/config's `staffAuth.mode`:
// - `token` (standalone): paste the shared staff token (kept in sessionStorage, gone when the tab closes);
// - `cognito` (AWS): username and password against the staff user pool with SRP, plus the first-sign-in
//   new password and TOTP MFA challenges (CognitoSignIn.tsx, session.ts).
// Either way the bookings page gets a StaffAccess: how to call the API, what the events connection
// sends, who is signed in, how to sign out.

import { type FormEvent, Fragment, Suspense, lazy, useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";

import { ApiFailure, cancelBooking, fetchBookings, fetchConversation } from "../api";
import type { AppConfig } from "../config";
import type { EventsState } from "../events/client";
import { useEvents } from "../events/useEvents";
import type { Booking } from "../protocol";
import { type CancelState, bookingSummary, cancelProblem, conversationList, initialStaff, staffReducer, todayIn } from "./state";

// The Cognito sign-in (and its SRP library, ~100 kB) is loaded only by staff pages in Cognito mode, so
// guests' voice page does not download it.
const CognitoStaff = lazy(() => import("./CognitoSignIn").then((m) => ({ default: m.CognitoStaff })));

const TOKEN_KEY = "concierge.staffToken";
const CHANNELS = ["/restaurant-booking/*", "/conversations/*"];

/** What the bookings page needs from a sign-in, whichever kind it was. */
export interface StaffAccess {
  /** run a staff API call with the current credential (Cognito: refreshed, retried once on 401) */
  call<T>(fn: (token: string) => Promise<T>): Promise<T>;
  /** the events connection's key: a new value opens a new connection */
  connectionKey: string;
  /** the credential the events connection sends, read on every (re)connect and subscribe */
  eventsAuthorization: () => string;
  /** the events connection was refused: renew the credential; true means "reconnect" */
  renew?: () => Promise<boolean>;
  /** changes whenever the credential was renewed: the events subscriptions are then renewed too */
  credentialVersion?: number;
  /** who is signed in (Cognito username), or null for the shared token */
  who: string | null;
  /** the API refused the credential for good */
  onRefused: () => void;
  onSignOut: () => void;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function readToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

const COLUMNS = 7;
const REASON_MAX = 500; // the API's limit (runtime/api/bookings.py)

const rowId = (bookingId: string) => `booking-${bookingId}`;
const confirmId = (bookingId: string) => `cancel-${bookingId}`;

const LIVE_TEXT: Record<EventsState, string> = {
  idle: "Live updates off",
  connecting: "Connecting live updates…",
  connected: "Live",
  reconnecting: "Reconnecting live updates…",
  closed: "Live updates off",
  unauthorized: "Live updates refused",
};

export function StaffView({ config }: { config: AppConfig }) {
  if (config.staffAuth.mode === "cognito") {
    return (
      <Suspense
        fallback={
          <p className="muted" role="status">
            Loading…
          </p>
        }
      >
        <CognitoStaff config={config} auth={config.staffAuth} />
      </Suspense>
    );
  }
  return <TokenStaff config={config} />;
}

/** Standalone: the shared staff token, as before Cognito. */
function TokenStaff({ config }: { config: AppConfig }) {
  const [token, setToken] = useState<string | null>(readToken);
  const signOut = useCallback(() => {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* nothing stored */
    }
    setToken(null);
  }, []);
  const access = useMemo<StaffAccess | null>(
    () =>
      token
        ? {
            call: (fn) => fn(token),
            connectionKey: token,
            eventsAuthorization: () => token,
            who: null,
            onRefused: signOut,
            onSignOut: signOut,
          }
        : null,
    [token, signOut],
  );
  if (!access) {
    return (
      <SignIn
        timeZone={config.timeZone}
        onSignedIn={(value) => {
          try {
            sessionStorage.setItem(TOKEN_KEY, value);
          } catch {
            /* private mode: keep it in memory only */
          }
          setToken(value);
        }}
      />
    );
  }
  return <Bookings config={config} access={access} />;
}

function SignIn({ timeZone, onSignedIn }: { timeZone: string; onSignedIn: (token: string) => void }) {
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const candidate = value.trim();
    if (!candidate) {
      setProblem("Enter the staff token.");
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      await fetchBookings(todayIn(timeZone), candidate); // proves the token before it is kept
      onSignedIn(candidate);
    } catch (error) {
      if (error instanceof ApiFailure && (error.status === 401 || error.status === 403)) {
        setProblem("That staff token was not accepted.");
      } else {
        setProblem(error instanceof Error ? error.message : String(error));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="staff signin" aria-labelledby="signin-title">
      <form className="card" onSubmit={(e) => void submit(e)} noValidate>
        <h1 id="signin-title">Staff sign in</h1>
        <p className="muted">Bookings and conversations are visible to restaurant staff only.</p>
        {/* lets password managers file the token under a name */}
        <input type="text" name="username" autoComplete="username" value="staff" readOnly hidden />
        <label className="field">
          <span>Staff token</span>
          <input
            type="password"
            autoComplete="current-password"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            aria-invalid={problem ? true : undefined}
            aria-describedby={problem ? "signin-problem" : undefined}
            required
          />
        </label>
        {problem ? (
          <p id="signin-problem" className="problem" role="alert">
            {problem}
          </p>
        ) : null}
        <button type="submit" className="button primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

export function Bookings({ config, access }: { config: AppConfig; access: StaffAccess }) {
  const [state, dispatch] = useReducer(staffReducer, todayIn(config.timeZone), initialStaff);
  const [problem, setProblem] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const { call, onRefused, onSignOut } = access;
  const live = useEvents(config, access.connectionKey, CHANNELS, (payload) => dispatch({ type: "event", payload, now: Date.now() }), {
    authorization: access.eventsAuthorization,
    renew: access.renew,
    credentialVersion: access.credentialVersion,
  });

  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    setProblem(null);
    call((token) => fetchBookings(state.date, token))
      .then((bookings) => {
        if (!cancelled) dispatch({ type: "bookingsLoaded", date: state.date, bookings });
      })
      .catch((error: unknown) => {
        if (cancelled) return;
        if (error instanceof ApiFailure && error.status === 401) onRefused();
        else setProblem(error instanceof Error ? error.message : String(error));
      })
      .finally(() => {
        if (!cancelled) setLoading(false);
      });
    return () => {
      cancelled = true;
    };
  }, [state.date, call, onRefused]);

  const showConversation = useCallback(
    async (sessionId: string) => {
      try {
        const turns = await call((token) => fetchConversation(sessionId, token));
        dispatch({ type: "conversationLoaded", sessionId, turns, now: Date.now() });
        document.getElementById(`conversation-${sessionId}`)?.focus();
      } catch (error) {
        setProblem(error instanceof Error ? error.message : String(error));
      }
    },
    [call],
  );

  // --- cancelling a booking: inline confirmation, DELETE, row updated from the response ---
  const [reason, setReason] = useState("");
  const [announcement, setAnnouncement] = useState("");
  const [focusRow, setFocusRow] = useState<string | null>(null);
  const cancelButtons = useRef(new Map<string, HTMLButtonElement>());

  useEffect(() => {
    if (focusRow === null) return;
    document.getElementById(rowId(focusRow))?.focus();
    setFocusRow(null);
  }, [focusRow, state.bookings]);

  const openCancel = (bookingId: string) => {
    setReason("");
    setAnnouncement("");
    dispatch({ type: "cancelOpen", bookingId });
  };
  const closeCancel = (bookingId: string) => {
    dispatch({ type: "cancelClose" });
    cancelButtons.current.get(bookingId)?.focus();
  };
  const confirmCancel = async (booking: Booking) => {
    const id = booking.booking_id;
    dispatch({ type: "cancelSending", bookingId: id });
    try {
      const updated = await call((token) => cancelBooking(id, token, reason));
      dispatch({ type: "cancelDone", booking: updated });
      setAnnouncement(`Booking ${id} for ${booking.name} is cancelled.`);
      setFocusRow(id); // its Cancel button is gone: keep the keyboard on the row
    } catch (error) {
      dispatch({ type: "cancelFailed", bookingId: id, problem: cancelProblem(error) });
    }
  };

  const conversations = conversationList(state);
  const summary = bookingSummary(state.bookings);

  return (
    <main className="staff" aria-labelledby="staff-title">
      <div className="staff-head">
        <h1 id="staff-title">Bookings</h1>
        <p className={`live live-${live.state}`} role="status" data-testid="live-state" data-state={live.state}>
          <span className="dot" aria-hidden="true" />
          {LIVE_TEXT[live.state]}
        </p>
        {access.who ? (
          <p className="who muted" data-testid="signed-in-as">
            Signed in as <strong>{access.who}</strong>
          </p>
        ) : null}
        <button type="button" className="button quiet" onClick={onSignOut}>
          Sign out
        </button>
      </div>
      {live.problem ? (
        <p className="problem" role="alert">
          {live.problem}
        </p>
      ) : null}

      <section className="card" aria-labelledby="day-title">
        <div className="day-bar">
          <h2 id="day-title">Day</h2>
          <label className="field inline">
            <span className="visually-hidden">Day to show</span>
            <input
              type="date"
              value={state.date}
              onChange={(e) => e.target.value && dispatch({ type: "date", date: e.target.value })}
              data-testid="staff-date"
            />
          </label>
          <p className="muted summary">
            {loading
              ? "Loading…"
              : `${plural(summary.bookings, "booking")}, ${plural(summary.guests, "guest")} confirmed` +
                (summary.cancelled ? ` · ${summary.cancelled} cancelled` : "")}
          </p>
        </div>
        {problem ? (
          <p className="problem" role="alert">
            {problem}
          </p>
        ) : null}
        <p className="visually-hidden" role="status" data-testid="staff-announcement">
          {announcement}
        </p>
        <div className="table-wrap">
          <table data-testid="bookings-table">
            <caption className="visually-hidden">Bookings on {state.date}</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Name</th>
                <th scope="col">Guests</th>
                <th scope="col">Status</th>
                <th scope="col">Booking id</th>
                <th scope="col">Conversation</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {state.bookings.length === 0 ? (
                <tr>
                  <td colSpan={COLUMNS} className="muted empty">
                    No bookings for this day yet. New ones appear here as they are made.
                  </td>
                </tr>
              ) : null}
              {state.bookings.map((b) => {
                const confirming = b.status === "confirmed" && state.cancel?.bookingId === b.booking_id ? state.cancel : null;
                return (
                  <Fragment key={b.booking_id}>
                    <tr
                      id={rowId(b.booking_id)}
                      tabIndex={-1}
                      className={`${state.fresh.includes(b.booking_id) ? "is-fresh" : ""} ${b.status === "cancelled" ? "is-cancelled" : ""}`}
                      data-booking-id={b.booking_id}
                      data-status={b.status}
                    >
                      <td data-label="Time">{b.hour}</td>
                      <td data-label="Name">{b.name}</td>
                      <td data-label="Guests">{b.num_guests}</td>
                      <td data-label="Status">
                        <span className={`badge badge-${b.status}`}>{b.status === "confirmed" ? "Confirmed" : "Cancelled"}</span>
                        {b.status === "cancelled" && b.cancellation_reason ? (
                          <span className="reason" data-testid="cancellation-reason">
                            Reason: {b.cancellation_reason}
                          </span>
                        ) : null}
                      </td>
                      <td data-label="Booking id">
                        <code>{b.booking_id}</code>
                      </td>
                      <td data-label="Conversation">
                        {b.session_id ? (
                          <button type="button" className="button quiet small" onClick={() => void showConversation(b.session_id as string)}>
                            Show
                          </button>
                        ) : (
                          <span className="muted">—</span>
                        )}
                      </td>
                      <td data-label="Action">
                        {b.status === "confirmed" ? (
                          <button
                            type="button"
                            className="button quiet small cancel-booking"
                            ref={(el) => {
                              if (el) cancelButtons.current.set(b.booking_id, el);
                              else cancelButtons.current.delete(b.booking_id);
                            }}
                            aria-expanded={confirming !== null}
                            aria-controls={confirming ? confirmId(b.booking_id) : undefined}
                            disabled={state.cancel?.phase === "sending"}
                            onClick={() => (confirming ? closeCancel(b.booking_id) : openCancel(b.booking_id))}
                          >
                            Cancel<span className="visually-hidden"> booking {b.booking_id}</span>
                          </button>
                        ) : (
                          <span className="muted">—</span>
                        )}
                      </td>
                    </tr>
                    {confirming ? (
                      <CancelConfirm
                        booking={b}
                        cancel={confirming}
                        reason={reason}
                        onReason={setReason}
                        onConfirm={() => void confirmCancel(b)}
                        onKeep={() => closeCancel(b.booking_id)}
                        onSignIn={onSignOut}
                      />
                    ) : null}
                  </Fragment>
                );
              })}
            </tbody>
          </table>
        </div>
      </section>

      <section className="card" aria-labelledby="conversations-title">
        <h2 id="conversations-title">Conversations</h2>
        {conversations.length === 0 ? (
          <p className="muted">Conversations appear here live while guests talk to the assistant.</p>
        ) : null}
        <ul className="conversations" data-testid="conversations">
          {conversations.map((c) => (
            <li key={c.sessionId} id={`conversation-${c.sessionId}`} tabIndex={-1} data-session-id={c.sessionId}>
              <p className="conversation-head">
                <code>{c.sessionId}</code>
                <span className={`badge badge-${c.session?.status ?? "active"}`}>
                  {c.session?.status === "ended" ? "Ended" : c.session ? "Active" : "Stored"}
                </span>
                {c.session?.transport ? <span className="muted">{c.session.transport}</span> : null}
              </p>
              <ol className="turns">
                {c.turns.map((t) => (
                  <li key={t.seq} className={`line role-${t.role.toLowerCase()}`}>
                    <span className="speaker">{t.role === "USER" ? "Guest" : "Assistant"}</span>
                    <span className="text">{t.text}</span>
                  </li>
                ))}
              </ol>
            </li>
          ))}
        </ul>
      </section>
    </main>
  );
}

/**
 * The inline "cancel this booking?" step under its row: an optional reason, then Cancel booking or
 * Keep booking (Escape keeps it too). An in-page form rather than window.confirm, so it can carry the
 * reason, stay readable by screen readers and show what went wrong next to the booking.
 */
function CancelConfirm({
  booking,
  cancel,
  reason,
  onReason,
  onConfirm,
  onKeep,
  onSignIn,
}: {
  booking: Booking;
  cancel: CancelState;
  reason: string;
  onReason: (value: string) => void;
  onConfirm: () => void;
  onKeep: () => void;
  onSignIn: () => void;
}) {
  const id = booking.booking_id;
  const sending = cancel.phase === "sending";
  const problem = cancel.problem;
  return (
    <tr className="confirm-row" id={confirmId(id)} data-testid="cancel-confirm">
      <td colSpan={COLUMNS} className="confirm-cell">
        <form
          className="cancel-confirm"
          aria-labelledby={`${confirmId(id)}-title`}
          aria-busy={sending}
          noValidate
          onSubmit={(e) => {
            e.preventDefault();
            if (!sending) onConfirm();
          }}
          onKeyDown={(e) => {
            if (e.key === "Escape" && !sending) {
              e.preventDefault();
              onKeep();
            }
          }}
        >
          <p id={`${confirmId(id)}-title`} className="confirm-title">
            Cancel booking <code>{id}</code> for {booking.name}, {booking.hour}, {booking.num_guests}{" "}
            {booking.num_guests === 1 ? "guest" : "guests"}? Their seats become free again.
          </p>
          <label className="field">
            <span>Reason (optional)</span>
            <input
              type="text"
              value={reason}
              maxLength={REASON_MAX}
              onChange={(e) => onReason(e.target.value)}
              disabled={sending}
              autoFocus
              aria-describedby={problem ? `${confirmId(id)}-problem` : undefined}
            />
          </label>
          {problem ? (
            <p id={`${confirmId(id)}-problem`} className="problem" role="alert">
              {problem.message}
            </p>
          ) : null}
          <div className="confirm-actions">
            {problem?.signIn ? (
              <button type="button" className="button primary" onClick={onSignIn}>
                Sign in again
              </button>
            ) : problem && !problem.retry ? null : (
              <button type="submit" className="button danger" disabled={sending}>
                {sending ? "Cancelling…" : problem ? "Try again" : "Cancel booking"}
              </button>
            )}
            <button type="button" className="button quiet" onClick={onKeep} disabled={sending}>
              {problem && !problem.retry && !problem.signIn ? "Close" : "Keep booking"}
            </button>
          </div>
        </form>
      </td>
    </tr>
  );
}
