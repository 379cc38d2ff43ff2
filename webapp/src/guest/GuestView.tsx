// The guest's page: Talk / Hang up, connection state, level meters, live transcript, booking card,
// measured response latency and voice choice.

import { useCallback, useEffect, useReducer, useRef, useState } from "react";

import { BookingCard } from "../components/BookingCard";
import { ConnectivityPanel } from "../components/ConnectivityPanel";
import { Meter } from "../components/Meter";
import { Transcript } from "../components/Transcript";
import type { AppConfig } from "../config";
import { conversationReducer, initialConversation } from "../conversation/state";
import { useEvents } from "../events/useEvents";
import type { ServerMessage } from "../protocol";
import { type CallSession, MicrophoneError, startCall } from "../voice/call";
import { type CheckResult, detailsText, routeText, runConnectivityCheck } from "../voice/connectivity";
import type { TransportName } from "../voice/transports";

type Phase = "idle" | "starting" | "connected" | "ended" | "error";

const ASSISTANT_STATE_TEXT: Record<string, string> = {
  idle: "",
  listening: "Listening…",
  thinking: "Thinking…",
  speaking: "Speaking…",
  ended: "The assistant ended the call.",
  error: "The assistant ran into a problem.",
};

export function GuestView({ config }: { config: AppConfig }) {
  const [conversation, dispatch] = useReducer(conversationReducer, initialConversation);
  const [phase, setPhase] = useState<Phase>("idle");
  const [transport, setTransport] = useState<TransportName | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [voice, setVoice] = useState<string>(config.defaultVoice ?? "");
  const [levels, setLevels] = useState({ mic: 0, assistant: 0 });
  // Reply times as heard here (voice/heard.ts), not the server's `latency` figure, which leaves out the network.
  const [heardMs, setHeardMs] = useState<number[]>([]);
  const [sessionToken, setSessionToken] = useState<string | null>(null);
  const session = useRef<CallSession | null>(null);
  const audioElement = useRef<HTMLAudioElement>(null);
  const talkButton = useRef<HTMLButtonElement>(null);
  const hangUpButton = useRef<HTMLButtonElement>(null);
  const [check, setCheck] = useState<CheckResult | null>(null);
  const [checking, setChecking] = useState(false);
  const [checkedAt, setCheckedAt] = useState<Date | null>(null);
  const [route, setRoute] = useState<string | null>(null);
  const checkInFlight = useRef<Promise<CheckResult | null> | null>(null);

  // The connectivity check: on page load (so it is done before the first Talk), and on demand.
  const runCheck = useCallback((): Promise<CheckResult | null> => {
    if (checkInFlight.current) return checkInFlight.current;
    setChecking(true);
    const running = runConnectivityCheck({
      iceServers: config.iceServers,
      iceTransportPolicy: config.iceTransportPolicy,
      transports: config.transports,
      pageUrl: window.location.href,
    })
      .then((result) => {
        setCheck(result);
        setCheckedAt(new Date());
        return result;
      })
      .catch(() => null) // a check that cannot run must never stop a call: Talk then tries as before
      .finally(() => {
        checkInFlight.current = null;
        setChecking(false);
      });
    checkInFlight.current = running;
    return running;
  }, [config]);

  useEffect(() => {
    if (config.precheck) void runCheck();
  }, [config.precheck, runCheck]);

  // The guest's own conversation channel: stored turns confirm what was said (and fill any gap).
  const channels = conversation.sessionId ? [`/conversations/${conversation.sessionId}`] : [];
  useEvents(config, sessionToken, channels, (payload) => dispatch({ type: "event", payload }));

  const onMessage = useCallback((message: ServerMessage) => {
    if (message.type === "interrupted") session.current?.call.flushPlayback();
    dispatch({ type: "message", message });
  }, []);

  // Bumped by every Talk and every hang-up, so a call that finishes connecting after the guest
  // already hung up is ended instead of coming alive behind an idle screen.
  const attempt = useRef(0);

  const finish = useCallback((reason: string | null) => {
    attempt.current += 1;
    session.current?.end();
    session.current = null;
    setLevels({ mic: 0, assistant: 0 });
    setPhase(reason ? "error" : "ended");
    if (reason) setProblem(`The call ended: ${reason}.`);
  }, []);

  const talk = useCallback(async () => {
    if (session.current) return;
    attempt.current += 1;
    const mine = attempt.current;
    dispatch({ type: "reset" });
    setHeardMs([]);
    setProblem(null);
    setNotice(null);
    setTransport(null);
    setSessionToken(null);
    setPhase("starting");
    setRoute(null);
    try {
      // Automatically before the first call (bounded: a few seconds at most); later calls reuse it.
      const known = config.precheck ? (check ?? (await runCheck())) : null;
      if (attempt.current !== mine) return;
      const started = await startCall({
        skipWebRtcBecause:
          known?.transport === "websocket" ? "the connection check found that only the WebSocket connection gets through" : null,
        config,
        voice: voice || null,
        audioElement: audioElement.current as HTMLAudioElement,
        handlers: { onMessage, onDropped: (reason) => finish(reason) },
        onReplyHeard: (ms) => {
          if (attempt.current === mine) setHeardMs((all) => [...all, ms].slice(-20));
        },
        onTransportAttempt: (name) => {
          if (attempt.current === mine) setTransport(name);
        },
      });
      if (attempt.current !== mine) {
        started.end(); // hung up while connecting
        return;
      }
      session.current = started;
      setTransport(started.call.transport);
      dispatch({ type: "session", sessionId: started.call.sessionId });
      setSessionToken(started.call.sessionToken);
      if (started.fallbackReason) {
        setNotice(`Using the WebSocket audio connection because ${started.fallbackReason}.`);
      }
      setPhase("connected");
    } catch (error) {
      if (attempt.current !== mine) return; // hung up while connecting: nothing to report
      setPhase("error");
      setTransport(null);
      if (error instanceof MicrophoneError) setProblem(error.message);
      else setProblem(`Could not start the call: ${error instanceof Error ? error.message : String(error)}.`);
    }
  }, [config, voice, onMessage, finish, check, runCheck]);

  const hangUp = useCallback(() => finish(null), [finish]);

  // Move focus to the control that now matters, so keyboard users can hang up straight away.
  useEffect(() => {
    if (phase === "connected") hangUpButton.current?.focus();
    if (phase === "ended" || phase === "error") talkButton.current?.focus();
  }, [phase]);

  useEffect(() => {
    if (phase !== "connected") return undefined;
    const timer = window.setInterval(() => {
      const current = session.current;
      if (current) setLevels({ mic: current.micMeter.level(), assistant: current.call.assistantMeter.level() });
    }, 100);
    return () => window.clearInterval(timer);
  }, [phase]);

  // During a call: which path the audio takes (the selected ICE candidate pair), refreshed now and then.
  useEffect(() => {
    if (phase !== "connected") {
      setRoute(null);
      return undefined;
    }
    let live = true;
    const refresh = () => {
      const current = session.current;
      if (!current) return;
      void current.call
        .route()
        .then((info) => {
          if (live) setRoute(routeText(info, current.call.transport));
        })
        .catch(() => undefined);
    };
    refresh();
    const timer = window.setInterval(refresh, 2000);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, [phase]);

  useEffect(() => () => session.current?.end(), []);

  useEffect(() => {
    if (conversation.assistant === "ended" && session.current) finish(null);
  }, [conversation.assistant, finish]);

  const inCall = phase === "starting" || phase === "connected";
  const connection =
    phase === "starting"
      ? transport === "websocket"
        ? "Connecting (WebSocket audio)…"
        : transport === "webrtc"
          ? "Connecting (WebRTC)…"
          : "Waiting for the microphone…"
      : phase === "connected"
        ? `Connected via ${transport === "webrtc" ? "WebRTC" : "WebSocket audio"}`
        : phase === "ended"
          ? "Call ended"
          : phase === "error"
            ? "Not connected"
            : "Ready";

  return (
    <main className="guest" aria-labelledby="guest-title">
      <section className="call-panel" aria-labelledby="guest-title">
        <h1 id="guest-title">Book a table at {config.restaurantName}</h1>
        <p className="muted">Talk to our assistant: it asks for your name, the date, the time and how many guests.</p>

        <div className="controls">
          {config.voices.length > 0 ? (
            <label className="field">
              <span>Voice</span>
              <select value={voice} onChange={(e) => setVoice(e.target.value)} disabled={inCall} data-testid="voice">
                {config.voices.map((v) => (
                  <option key={v.id} value={v.id}>
                    {v.label}
                  </option>
                ))}
              </select>
            </label>
          ) : null}
          {inCall ? (
            <button ref={hangUpButton} type="button" className="button danger" onClick={hangUp}>
              Hang up
            </button>
          ) : (
            <button ref={talkButton} type="button" className="button primary" onClick={() => void talk()}>
              Talk
            </button>
          )}
        </div>

        <div className="status-row">
          <p className="connection" role="status" data-testid="connection" data-phase={phase} data-transport={transport ?? ""}>
            <span className={`dot dot-${phase}`} aria-hidden="true" />
            {connection}
          </p>
          {phase === "connected" && conversation.assistant !== "idle" ? (
            <p className="assistant-state" data-testid="assistant-state">
              {ASSISTANT_STATE_TEXT[conversation.assistant] ?? conversation.assistant}
            </p>
          ) : null}
        </div>
        {notice ? <p className="notice" data-testid="notice">{notice}</p> : null}
        {problem ? (
          <p className="problem" role="alert" data-testid="problem">
            {problem}
          </p>
        ) : null}
        {conversation.error ? (
          <p className="problem" role="alert">
            {conversation.error.message}
          </p>
        ) : null}
        {conversation.fallback ? (
          <p className="notice" role="status" data-testid="fallback" data-reason={conversation.fallback.reason}>
            Switched to the backup assistant: the main one is unavailable right now. Everything you said so far is kept.
          </p>
        ) : null}

        <div className="meters">
          <Meter id="mic-level" label="Your microphone" level={levels.mic} />
          <Meter id="assistant-level" label="Assistant" level={levels.assistant} />
        </div>
        <p className="latency" data-testid="latency" data-replies={heardMs.length}>
          Response time:{" "}
          {heardMs.length === 0 ? (
            <span className="muted">not measured yet</span>
          ) : (
            <strong>{Math.round(heardMs[heardMs.length - 1])} ms</strong>
          )}
          {heardMs.length > 1 ? (
            <span className="muted">
              {" "}
              (average {Math.round(heardMs.reduce((a, b) => a + b, 0) / heardMs.length)} ms over {heardMs.length} replies)
            </span>
          ) : null}
        </p>
        {conversation.booking ? <BookingCard card={conversation.booking} /> : null}
        <ConnectivityPanel
          result={check}
          running={checking}
          details={
            check && checkedAt
              ? detailsText(check, {
                  userAgent: navigator.userAgent,
                  origin: window.location.origin,
                  when: checkedAt,
                  during: route,
                })
              : null
          }
          during={route}
          canCheck={!inCall}
          onCheck={() => void runCheck()}
        />
        {/* Chrome decodes a remote WebRTC track only when a media element plays it. */}
        <audio ref={audioElement} autoPlay aria-hidden="true" />
      </section>
      <Transcript lines={conversation.lines} />
    </main>
  );
}
