// The connectivity check's result in the guest view: the plain-words verdict, what was tested, the
// path a call in progress uses, and the details as copyable text for support. All logic lives in
// voice/connectivity.ts; this only shows it.

import { useState } from "react";

import { type CheckResult, VERDICT_TEXT } from "../voice/connectivity";

function tested(value: boolean | null, yes: string, no: string, untested: string): string {
  return value === null ? untested : value ? yes : no;
}

export function ConnectivityPanel({
  result,
  running,
  details,
  during,
  canCheck,
  onCheck,
}: {
  result: CheckResult | null;
  running: boolean;
  details: string | null;
  /** what the call in progress uses, e.g. "WebRTC relayed over TLS" */
  during: string | null;
  canCheck: boolean;
  onCheck(): void;
}) {
  const [copied, setCopied] = useState<"copied" | "select" | null>(null);

  const copy = async () => {
    if (!details) return;
    try {
      await navigator.clipboard.writeText(details);
      setCopied("copied");
    } catch {
      // No clipboard permission (or not a secure context): the text is shown below, select it by hand.
      setCopied("select");
    }
  };

  const state = running ? "running" : result ? "done" : "idle";
  return (
    <section className="connectivity" aria-labelledby="connectivity-title" data-testid="connectivity" data-state={state}
      data-verdict={result && !running ? result.verdict : ""}
      data-transport={result && !running ? (result.transport ?? "") : ""}>
      <h2 id="connectivity-title">Connection check</h2>
      <p className="connectivity-headline" role="status" data-testid="connectivity-headline">
        {running ? "Checking what this network lets through…" : result ? result.headline : "Not checked yet."}
      </p>
      {result && !running ? (
        <ul className="connectivity-facts">
          <li data-testid="connectivity-verdict"><strong>{VERDICT_TEXT[result.verdict]}</strong></li>
          <li data-testid="connectivity-udp">
            UDP: {tested(result.udp, "gets out", "blocked", "not tested (no STUN/TURN server configured)")}
          </li>
          <li data-testid="connectivity-tls">
            TURN over TLS (443): {tested(result.turnTls, "works", "does not work", "not configured")}
          </li>
          <li data-testid="connectivity-websocket">
            WebSocket fallback: {tested(result.websocket, "reachable", "not reachable", "not offered")}
          </li>
        </ul>
      ) : null}
      {during ? (
        <p data-testid="call-route">
          This call uses: <strong>{during}</strong>
        </p>
      ) : null}
      <div className="connectivity-actions">
        <button type="button" className="button small quiet" onClick={onCheck} disabled={running || !canCheck}>
          Check connection
        </button>
        <button type="button" className="button small quiet" onClick={() => void copy()} disabled={!details || running}>
          Copy details
        </button>
        {copied === "copied" ? <span className="muted" data-testid="copied">Copied.</span> : null}
        {copied === "select" ? <span className="muted">Select the text below and copy it.</span> : null}
      </div>
      {details && !running ? (
        <details open={copied === "select"}>
          <summary>Details for support</summary>
          <pre className="connectivity-details" data-testid="connectivity-details">{details}</pre>
        </details>
      ) : null}
    </section>
  );
}
