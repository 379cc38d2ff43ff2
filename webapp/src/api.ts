// REST calls the pages make, with the runtime's error shape {"error":{"code","message"}} turned into
// an ApiFailure whose message can be shown as is.

import { type Booking, type Turn, isBooking, isTurn } from "./protocol";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function request(path: string, token: string, init: { method?: string; json?: unknown } = {}): Promise<unknown> {
  const headers: Record<string, string> = { Accept: "application/json", Authorization: `Bearer ${token}` };
  if (init.json !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method: init.method ?? "GET",
      headers,
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
    });
  } catch {
    throw new ApiFailure(0, "network", "The server could not be reached. Check the connection and try again.");
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    /* empty or not JSON */
  }
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiFailure(response.status, error?.code ?? "http_error", error?.message ?? `Request failed (HTTP ${response.status}).`);
  }
  return body;
}

function listIn(body: unknown, key: string): unknown[] {
  if (Array.isArray(body)) return body;
  const value = (body as Record<string, unknown> | null)?.[key];
  return Array.isArray(value) ? value : [];
}

export async function fetchBookings(date: string, token: string): Promise<Booking[]> {
  return listIn(await request(`/api/bookings?date=${encodeURIComponent(date)}`, token), "bookings").filter(isBooking);
}

export async function fetchConversation(sessionId: string, token: string): Promise<Turn[]> {
  return listIn(await request(`/api/conversations/${encodeURIComponent(sessionId)}`, token), "turns").filter(isTurn);
}

/**
 * Cancel a booking (idempotent on the server, so retrying after a lost answer is safe) and return the
 * booking as stored afterwards. A blank reason sends no body at all.
 */
export async function cancelBooking(bookingId: string, token: string, reason?: string): Promise<Booking> {
  const trimmed = reason?.trim();
  const body = await request(`/api/bookings/${encodeURIComponent(bookingId)}`, token, {
    method: "DELETE",
    json: trimmed ? { reason: trimmed } : undefined,
  });
  if (!isBooking(body)) {
    throw new ApiFailure(502, "bad_response", "The server's answer was not a booking. Reload the page to see the current state.");
  }
  return body;
}
