// The staff page: sign in with the staff token (kept in sessionStorage, so it is gone when the tab
// closes), the chosen day's bookings and the conversations, both kept live by the events channels.

import { type FormEvent, useCallback, useEffect, useReducer, useState } from "react";

import { ApiFailure, fetchBookings, fetchConversation } from "../api";
import type { AppConfig } from "../config";
import type { EventsState } from "../events/client";
import { useEvents } from "../events/useEvents";
import { conversationList, initialStaff, staffReducer } from "./state";

const TOKEN_KEY = "concierge.staffToken";
const CHANNELS = ["/restaurant-booking/*", "/conversations/*"];

function today(): string {
  const now = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
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

const LIVE_TEXT: Record<EventsState, string> = {
  idle: "Live updates off",
  connecting: "Connecting live updates…",
  connected: "Live",
  reconnecting: "Reconnecting live updates…",
  closed: "Live updates off",
  unauthorized: "Live updates refused",
};

export function StaffView({ config }: { config: AppConfig }) {
  const [token, setToken] = useState<string | null>(readToken);
  const signOut = useCallback(() => {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* nothing stored */
    }
    setToken(null);
  }, []);
  if (!token) {
    return (
      <SignIn
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
  return (
    <Bookings
      config={config}
      token={token}
      onSignOut={signOut}
    />
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (token: string) => void }) {
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
      await fetchBookings(today(), candidate); // proves the token before it is kept
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

function Bookings({ config, token, onSignOut }: { config: AppConfig; token: string; onSignOut: () => void }) {
  const [state, dispatch] = useReducer(staffReducer, today(), initialStaff);
  const [problem, setProblem] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const live = useEvents(config, token, CHANNELS, (payload) => dispatch({ type: "event", payload, now: Date.now() }));

  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    setProblem(null);
    fetchBookings(state.date, token)
      .then((bookings) => {
        if (!cancelled) dispatch({ type: "bookingsLoaded", date: state.date, bookings });
      })
      .catch((error: unknown) => {
        if (cancelled) return;
        if (error instanceof ApiFailure && error.status === 401) onSignOut();
        else setProblem(error instanceof Error ? error.message : String(error));
      })
      .finally(() => {
        if (!cancelled) setLoading(false);
      });
    return () => {
      cancelled = true;
    };
  }, [state.date, token, onSignOut]);

  const showConversation = useCallback(
    async (sessionId: string) => {
      try {
        const turns = await fetchConversation(sessionId, token);
        dispatch({ type: "conversationLoaded", sessionId, turns, now: Date.now() });
        document.getElementById(`conversation-${sessionId}`)?.focus();
      } catch (error) {
        setProblem(error instanceof Error ? error.message : String(error));
      }
    },
    [token],
  );

  const conversations = conversationList(state);
  const confirmedGuests = state.bookings.filter((b) => b.status === "confirmed").reduce((n, b) => n + b.num_guests, 0);

  return (
    <main className="staff" aria-labelledby="staff-title">
      <div className="staff-head">
        <h1 id="staff-title">Bookings</h1>
        <p className={`live live-${live.state}`} role="status" data-testid="live-state" data-state={live.state}>
          <span className="dot" aria-hidden="true" />
          {LIVE_TEXT[live.state]}
        </p>
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
            {loading ? "Loading…" : `${plural(state.bookings.length, "booking")}, ${plural(confirmedGuests, "guest")} confirmed`}
          </p>
        </div>
        {problem ? (
          <p className="problem" role="alert">
            {problem}
          </p>
        ) : null}
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
              </tr>
            </thead>
            <tbody>
              {state.bookings.length === 0 ? (
                <tr>
                  <td colSpan={6} className="muted empty">
                    No bookings for this day yet. New ones appear here as they are made.
                  </td>
                </tr>
              ) : null}
              {state.bookings.map((b) => (
                <tr
                  key={b.booking_id}
                  className={`${state.fresh.includes(b.booking_id) ? "is-fresh" : ""} ${b.status === "cancelled" ? "is-cancelled" : ""}`}
                  data-booking-id={b.booking_id}
                >
                  <td data-label="Time">{b.hour}</td>
                  <td data-label="Name">{b.name}</td>
                  <td data-label="Guests">{b.num_guests}</td>
                  <td data-label="Status">
                    <span className={`badge badge-${b.status}`}>{b.status === "confirmed" ? "Confirmed" : "Cancelled"}</span>
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
                </tr>
              ))}
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
