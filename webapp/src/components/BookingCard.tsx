import type { BookingCard as BookingCardState } from "../conversation/state";

const TITLES = { created: "Table booked", cancelled: "Booking cancelled", found: "Booking found" } as const;

function formatDate(date: string): string {
  const parsed = new Date(`${date}T12:00:00`);
  if (Number.isNaN(parsed.getTime())) return date;
  return parsed.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

export function BookingCard({ card }: { card: BookingCardState }) {
  const { booking } = card;
  const cancelled = booking.status === "cancelled";
  return (
    <section className={`booking-card ${cancelled ? "is-cancelled" : ""}`} aria-live="polite" data-testid="booking-card">
      <h2>{TITLES[card.action]}</h2>
      <dl>
        <dt>Booking id</dt>
        <dd className="booking-id" data-testid="booking-id">
          {booking.booking_id}
        </dd>
        <dt>Name</dt>
        <dd>{booking.name}</dd>
        <dt>Date</dt>
        <dd>{formatDate(booking.date)}</dd>
        <dt>Time</dt>
        <dd>{booking.hour}</dd>
        <dt>Guests</dt>
        <dd>{booking.num_guests}</dd>
        <dt>Status</dt>
        <dd>{cancelled ? "Cancelled" : "Confirmed"}</dd>
        {booking.cancellation_reason ? (
          <>
            <dt>Reason</dt>
            <dd>{booking.cancellation_reason}</dd>
          </>
        ) : null}
      </dl>
    </section>
  );
}
