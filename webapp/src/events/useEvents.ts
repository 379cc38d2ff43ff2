// React binding for the events client: one connection per credential, subscriptions to the given
// channels, parsed payloads handed to `onEvent`. Closes when the component unmounts.
//
// `token` is the credential, or (when `options.authorization` is given) only the connection's key: a
// signed-in staff member's access token changes every refresh, and the client reads
// `options.authorization()` on every (re)connect and subscribe, so a refresh needs no new connection.
// When `options.credentialVersion` changes (the token was refreshed), every channel is subscribed again
// with the new token before the old subscription is dropped: a gateway may end a subscription when the
// token it was made with expires. When the connection or a subscription is refused anyway (an expired
// token at a reconnect), `options.renew` may refresh the credential; the connection is then opened again,
// once until a subscription succeeds.

import { useEffect, useRef, useState } from "react";

import type { AppConfig } from "../config";
import { type EventPayload, parseEventPayload } from "../protocol";
import { EventsClient, type EventsState, isUnauthorized } from "./client";

export interface EventsOptions {
  authorization?: () => string;
  renew?: () => Promise<boolean>;
  credentialVersion?: string | number;
}

export function useEvents(
  config: AppConfig | null,
  token: string | null,
  channels: string[],
  onEvent: (payload: EventPayload) => void,
  options: EventsOptions = {},
): { state: EventsState; problem: string | null } {
  const [state, setState] = useState<EventsState>("idle");
  const [problem, setProblem] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  /** a renewal happened and no subscription has succeeded since: do not renew again (no loop) */
  const renewedInVain = useRef(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const opts = useRef(options);
  opts.current = options;
  const channelKey = channels.join("|");
  const clientRef = useRef<EventsClient | null>(null);

  useEffect(() => {
    if (!config || !token || channelKey === "") return undefined;
    setProblem(null);
    let closed = false;
    let renewing = false;
    const renewAndReconnect = (detail: string) => {
      const renew = opts.current.renew;
      if (renewing) return true; // another channel's refusal already started it
      if (!renew || renewedInVain.current) return false;
      renewedInVain.current = true;
      renewing = true;
      setState("reconnecting");
      void renew().then((renewed) => {
        if (closed) return;
        if (renewed) setGeneration((n) => n + 1);
        else {
          setState("unauthorized");
          setProblem(detail);
        }
      });
      return true;
    };
    const client = new EventsClient({
      url: config.events.realtime,
      host: config.events.host,
      authorization: () => opts.current.authorization?.() ?? token,
      onState: (next, detail) => {
        // Refused: renew the credential and reconnect before telling anyone.
        if (next === "unauthorized" && renewAndReconnect(detail ?? "The live updates credential was refused.")) return;
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
        {
          onReady: () => {
            renewedInVain.current = false;
          },
          onError: (errors) => {
            const detail = `Live updates for ${channel} refused: ${errors.map((e) => e.message).join("; ")}`;
            if (!(isUnauthorized(errors) && renewAndReconnect(detail))) setProblem(detail);
          },
        },
      );
    }
    client.connect();
    clientRef.current = client;
    return () => {
      closed = true;
      clientRef.current = null;
      client.close();
    };
  }, [config, token, channelKey, generation]);

  const version = options.credentialVersion;
  const firstVersion = useRef(version);
  useEffect(() => {
    if (version === firstVersion.current) return; // the connection was made with this credential
    firstVersion.current = version;
    clientRef.current?.renewSubscriptions();
  }, [version]);

  return { state, problem };
}
