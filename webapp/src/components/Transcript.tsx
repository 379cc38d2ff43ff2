import { useEffect, useRef } from "react";

import type { TranscriptLine } from "../conversation/state";

export function Transcript({ lines }: { lines: TranscriptLine[] }) {
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    // Keep the newest line in view inside the list only: scrolling the page itself would yank a
    // phone user away from the booking card while the assistant is still talking.
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <section className="transcript" aria-labelledby="transcript-title">
      <h2 id="transcript-title">Conversation</h2>
      {lines.length === 0 ? (
        <p className="muted">Press Talk and the assistant will greet you. What you both say appears here.</p>
      ) : null}
      {/* polite: a screen reader announces finished lines without cutting off the assistant's voice */}
      <ol ref={list} aria-live="polite" data-testid="transcript">
        {lines.map((line) => (
          <li
            key={line.key}
            className={`line role-${line.role.toLowerCase()} ${line.final ? "" : "is-partial"} ${line.interrupted ? "is-interrupted" : ""}`}
            data-role={line.role}
            data-final={line.final ? "true" : "false"}
            data-saved={line.seq !== undefined ? "true" : "false"}
          >
            <span className="speaker">
              {line.role === "USER" ? "You" : "Assistant"}
              {/* confirmed by the stored turn arriving on this conversation's events channel */}
              {line.seq !== undefined ? (
                <span className="saved" title="Saved to the conversation history">
                  {" "}
                  ✓<span className="visually-hidden"> saved</span>
                </span>
              ) : null}
            </span>
            <span className="text">{line.text}</span>
            {line.interrupted ? <span className="tag">interrupted</span> : null}
          </li>
        ))}
      </ol>
    </section>
  );
}
