// React binding for the events client: one connection per credential, subscriptions to the given
// channels, parsed payloads handed to `onEvent`. Closes when the component unmounts.

import { useEffect, useRef, useState } from "react";

import type { AppConfig } from "../config";
import { type EventPayload, parseEventPayload } from "../protocol";
import { EventsClient, type EventsState } from "./client";

export function useEvents(
  config: AppConfig | null,
  token: string | null,
  channels: string[],
  onEvent: (payload: EventPayload) => void,
): { state: EventsState; problem: string | null } {
  const [state, setState] = useState<EventsState>("idle");
  const [problem, setProblem] = useState<string | null>(null);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const channelKey = channels.join("|");

  useEffect(() => {
    if (!config || !token || channelKey === "") return undefined;
    setProblem(null);
    const client = new EventsClient({
      url: config.events.realtime,
      host: config.events.host,
      authorization: () => token,
      onState: (next, detail) => {
        setState(next);
        if (next === "unauthorized") setProblem(detail ?? "The live updates credential was refused.");
      },
    });
    for (const channel of channelKey.split("|")) {
      client.subscribe(
        channel,
        (raw) => {
          const payload = parseEventPayload(raw);
          if (payload) handler.current(payload);
        },
        { onError: (errors) => setProblem(`Live updates for ${channel} refused: ${errors.map((e) => e.message).join("; ")}`) },
      );
    }
    client.connect();
    return () => client.close();
  }, [config, token, channelKey]);

  return { state, problem };
}
