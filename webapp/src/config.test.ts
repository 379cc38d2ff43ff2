import { describe, expect, it } from "vitest";

import { parseConfig, parseStaffAuth, validTimeZone } from "./config";

const PAGE = "http://127.0.0.1:8000/";

describe("parseConfig", () => {
  it("reads the runtime's /api/config body", () => {
    const config = parseConfig(
      {
        iceServers: [{ urls: ["turn:turn.example:3478?transport=udp"], username: "u", credential: "c" }],
        iceTransportPolicy: "relay",
        events: { http: "http://127.0.0.1:8000/event", realtime: "ws://127.0.0.1:8000/event/realtime", auth: "authorization" },
        engine: "local",
        voices: ["heart"],
        voice: "heart",
        transports: ["webrtc", "websocket"],
        restaurant: { name: "Chez Test", timeZone: "UTC" },
      },
      PAGE,
    );
    expect(config.iceServers).toEqual([{ urls: ["turn:turn.example:3478?transport=udp"], username: "u", credential: "c" }]);
    expect(config.iceTransportPolicy).toBe("relay");
    expect(config.events).toEqual({
      http: "http://127.0.0.1:8000/event",
      realtime: "ws://127.0.0.1:8000/event/realtime",
      host: "127.0.0.1:8000",
      auth: "authorization",
    });
    expect(config.voices).toEqual([{ id: "heart", label: "Heart" }]);
    expect(config.defaultVoice).toBe("heart");
    expect(config.restaurantName).toBe("Chez Test");
  });

  it("uses the AppSync HTTP domain as the auth host in the cloud", () => {
    const config = parseConfig(
      {
        events: {
          http: "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
          realtime: "wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime",
        },
      },
      "https://concierge.example/",
    );
    expect(config.events.host).toBe("abc.appsync-api.eu-west-1.amazonaws.com");
    expect(config.events.realtime).toBe("wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime");
  });

  it("falls back to this origin and sane defaults when fields are missing", () => {
    const config = parseConfig({}, "https://concierge.example/#/staff");
    expect(config.events.realtime).toBe("wss://concierge.example/event/realtime");
    expect(config.events.host).toBe("concierge.example");
    expect(config.iceServers).toEqual([]);
    expect(config.iceTransportPolicy).toBe("all");
    expect(config.transports).toEqual(["webrtc", "websocket"]);
    expect(config.voices).toEqual([]);
    expect(config.defaultVoice).toBeNull();
    expect(config.iceConnectTimeoutMs).toBe(6000);
  });

  it("accepts voice objects and keeps the default voice selectable", () => {
    const config = parseConfig({ voices: [{ id: "tiffany", language: "en-US" }], defaultVoice: "matthew" }, PAGE);
    expect(config.voices.map((v) => v.id)).toEqual(["matthew", "tiffany"]);
    expect(config.voices[1].label).toBe("tiffany (en-US)");
  });

  it("lets the page force relay-only ICE or one transport (used to test the fallback)", () => {
    const relay = parseConfig({ transports: ["webrtc", "websocket"] }, `${PAGE}?relay=only&iceTimeoutMs=2500`);
    expect(relay.iceTransportPolicy).toBe("relay");
    expect(relay.iceConnectTimeoutMs).toBe(2500);
    expect(relay.precheck).toBe(true);
    expect(parseConfig({}, `${PAGE}?relay=only&precheck=off`).precheck).toBe(false);
    expect(parseConfig({}, `${PAGE}?transport=websocket`).transports).toEqual(["websocket"]);
    expect(parseConfig({ transports: ["carrier-pigeon"] }, PAGE).transports).toEqual(["webrtc", "websocket"]);
  });

  it("keeps the restaurant's time zone (the staff page's 'today' is the restaurant's day)", () => {
    expect(parseConfig({ restaurant: { name: "X", timeZone: "Pacific/Auckland" } }, PAGE).timeZone).toBe("Pacific/Auckland");
    expect(parseConfig({}, PAGE).timeZone).toBe("UTC");
    expect(validTimeZone("Not/AZone")).toBe("UTC");
  });

  it("reads staffAuth: the token box by default, the Cognito pool when the runtime says so", () => {
    expect(parseConfig({}, PAGE).staffAuth).toEqual({ mode: "token" });
    expect(parseStaffAuth({ mode: "token" })).toEqual({ mode: "token" });
    expect(
      parseStaffAuth({ mode: "cognito", region: "eu-west-1", userPoolId: "eu-west-1_Abc", clientId: "c1", endpoint: null, group: "staff" }),
    ).toEqual({
      mode: "cognito",
      region: "eu-west-1",
      userPoolId: "eu-west-1_Abc",
      clientId: "c1",
      endpoint: "https://cognito-idp.eu-west-1.amazonaws.com/",
      group: "staff",
    });
    expect(
      parseStaffAuth({ mode: "cognito", userPoolId: "us-east-1_X", clientId: "c", endpoint: "http://127.0.0.1:5000" }),
    ).toMatchObject({ region: "us-east-1", endpoint: "http://127.0.0.1:5000", group: "staff" });
  });
});
