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

async function request(path: string, token: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json", Authorization: `Bearer ${token}` } });
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
