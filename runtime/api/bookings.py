"""REST bookings: create (idempotent), look up, cancel, and the staff's list of a day.

A booking id is the guest's receipt: anyone holding one may read or cancel that booking, which is why
ids carry 50 random bits. Listing needs the staff token. Creates and cancels are rate limited per
client address; every body error becomes a 4xx JSON error with per-field ``details``.
"""

from __future__ import annotations

from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from runtime.api.security import principal_of, require_staff
from runtime.errors import ApiError
from runtime.http_body import read_json
from runtime.ratelimit import RateLimiter, client_key
from runtime.services import services_of

# Per client address: a burst a busy front desk or a party of retries never hits, a steady 2/s after.
RATE_PER_SECOND = 2.0
RATE_BURST = 60


def _booking_response(booking: Any, status: int) -> JSONResponse:
    return JSONResponse(booking.to_dict(), status_code=status,
                        headers={"Location": f"/api/bookings/{booking.booking_id}"})


def routes() -> list[BaseRoute]:
    limiter = RateLimiter(RATE_PER_SECOND, RATE_BURST)

    async def create_booking(request: Request) -> JSONResponse:
        """Book a table.
        ---
        summary: Create a booking (honours Idempotency-Key)
        parameters:
          - {name: Idempotency-Key, in: header, required: false, schema: {type: string, maxLength: 200},
             description: replaying the same key and body returns the original booking with 200}
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [name, date, hour, num_guests]
                properties:
                  name: {type: string, minLength: 1, maxLength: 100, example: "Zoë O'Brien"}
                  date: {type: string, format: date, example: "2026-12-03"}
                  hour: {type: string, pattern: '^\\d{2}:\\d{2}$', example: "19:00"}
                  num_guests: {type: integer, minimum: 1, maximum: 20}
        responses:
          201: {description: 'booked; body is the booking, Location its URL'}
          200: {description: idempotent replay; body is the original booking}
          400: {description: malformed JSON (invalid_json)}
          409: {description: 'slot_full (details: seats_left, alternatives) or idempotency_key_reused'}
          413: {description: body too large}
          415: {description: not JSON}
          422: {description: 'validation_error; details maps each field to what is wrong'}
          429: {description: too many requests from this address}
        """
        limiter.check(request, "bookings")
        services = services_of(request)
        data = await read_json(request, required=True)
        principal = principal_of(request)
        session_id = principal.session_id if principal is not None and not principal.is_staff else None
        # Staff are not limited: the front desk books for the guests who phone in.
        client = None if principal is not None and principal.is_staff else client_key(request)
        booking, created = await services.bookings.create(
            data, idempotency_key=request.headers.get("idempotency-key"), session_id=session_id, client=client)
        return _booking_response(booking, 201 if created else 200)

    async def list_bookings(request: Request) -> JSONResponse:
        """The day's bookings, for staff.
        ---
        summary: List bookings of a date (staff token required)
        security: [{bearer: []}]
        parameters:
          - {name: date, in: query, required: false, schema: {type: string, format: date},
             description: 'YYYY-MM-DD; default: today in the restaurant time zone'}
        responses:
          200: {description: '{"date", "bookings": [booking, ...]} ordered by time'}
          401: {description: no valid credential}
          403: {description: a guest token}
          422: {description: malformed date}
        """
        require_staff(request)
        services = services_of(request)
        day = request.query_params.get("date") or services.bookings.now().date().isoformat()
        bookings = await services.bookings.list_by_date(day)
        return JSONResponse({"date": day, "bookings": [b.to_dict() for b in bookings]})

    async def get_booking(request: Request) -> JSONResponse:
        """A booking by id (the guest's receipt).
        ---
        summary: Look up a booking
        parameters:
          - {name: booking_id, in: path, required: true, schema: {type: string, example: BK-7QX2M4KD9A}}
        responses:
          200: {description: the booking}
          404: {description: no such booking (booking_not_found)}
        """
        booking = await services_of(request).bookings.get(request.path_params["booking_id"])
        return _booking_response(booking, 200)

    async def cancel_booking(request: Request) -> JSONResponse:
        """Cancel a booking and free its seats; cancelling again is harmless.
        ---
        summary: Cancel a booking (idempotent)
        parameters:
          - {name: booking_id, in: path, required: true, schema: {type: string}}
          - {name: reason, in: query, required: false, schema: {type: string, maxLength: 500}}
        requestBody:
          required: false
          content:
            application/json:
              schema: {type: object, properties: {reason: {type: string, maxLength: 500}}}
        responses:
          200: {description: the cancelled booking}
          400: {description: malformed JSON body (invalid_json)}
          404: {description: no such booking}
          422: {description: invalid reason}
          429: {description: too many requests from this address}
        """
        limiter.check(request, "cancellations")
        data = await read_json(request, required=False)
        reason: Any = request.query_params.get("reason")
        if data is not None:
            if not isinstance(data, dict):
                raise ApiError("The body must be a JSON object like {\"reason\": \"...\"}.",
                               code="validation_error", status=422, details={"body": "must be a JSON object"})
            reason = data.get("reason", reason)
        booking, _ = await services_of(request).bookings.cancel(request.path_params["booking_id"], reason)
        return _booking_response(booking, 200)

    # One route per path, its methods on one HTTPEndpoint: with a Route per method, Starlette answers a
    # 405 from the first route whose path matched, and its Allow header named only that route's methods.
    # The OpenAPI generator reads each method's own docstring from the class.
    class Bookings(HTTPEndpoint):
        get = staticmethod(list_bookings)
        post = staticmethod(create_booking)

    class Booking(HTTPEndpoint):
        get = staticmethod(get_booking)
        delete = staticmethod(cancel_booking)

    return [
        Route("/api/bookings", Bookings),
        Route("/api/bookings/{booking_id}", Booking),
    ]
