import { afterEach, describe, expect, it, vi } from "vitest";

import { ApiFailure, cancelBooking } from "./api";

const cancelled = {
  booking_id: "BK-7QX2M4KD9A",
  name: "Alice Smith",
  date: "2030-05-01",
  hour: "19:00",
  num_guests: 4,
  status: "cancelled",
  created_at: "2030-04-01T10:00:00Z",
  cancellation_reason: "Guest called",
  cancelled_at: "2030-04-30T18:00:00Z",
};

function answer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function stubFetch(impl: (url: string, init: RequestInit) => Promise<Response>) {
  const spy = vi.fn(impl);
  vi.stubGlobal("fetch", spy);
  return spy;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("cancelBooking", () => {
  it("sends DELETE with the staff token and the reason as JSON, and returns the stored booking", async () => {
    const spy = stubFetch(async () => answer(200, cancelled));
    const booking = await cancelBooking("BK-7QX2M4KD9A", "staff-secret", "  Guest called ");
    expect(booking).toEqual(cancelled);
    const [url, init] = spy.mock.calls[0];
    expect(url).toBe("/api/bookings/BK-7QX2M4KD9A");
    expect(init.method).toBe("DELETE");
    const headers = init.headers as Record<string, string>;
    expect(headers.Authorization).toBe("Bearer staff-secret");
    expect(headers["Content-Type"]).toBe("application/json");
    expect(JSON.parse(init.body as string)).toEqual({ reason: "Guest called" });
  });

  it("sends no body when no reason is given", async () => {
    const spy = stubFetch(async () => answer(200, { ...cancelled, cancellation_reason: undefined }));
    await cancelBooking("BK-1", "t", "   ");
    const [, init] = spy.mock.calls[0];
    expect(init.body).toBeUndefined();
    expect((init.headers as Record<string, string>)["Content-Type"]).toBeUndefined();
  });

  it("turns the runtime's JSON error into an ApiFailure with its status, code and message", async () => {
    stubFetch(async () => answer(401, { error: { code: "unauthorized", message: "Sign in first." } }));
    const failure = await cancelBooking("BK-1", "old", undefined).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApiFailure);
    expect(failure).toMatchObject({ status: 401, code: "unauthorized", message: "Sign in first." });
  });

  it("reports an unreachable server as status 0 (network)", async () => {
    stubFetch(async () => {
      throw new TypeError("Failed to fetch");
    });
    await expect(cancelBooking("BK-1", "t")).rejects.toMatchObject({ status: 0, code: "network" });
  });

  it("rejects an answer that is not a booking instead of showing garbage", async () => {
    stubFetch(async () => answer(200, { ok: true }));
    await expect(cancelBooking("BK-1", "t")).rejects.toMatchObject({ code: "bad_response" });
  });
});
