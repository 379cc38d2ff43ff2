"""Nova concierge runtime: signaling, media, speech sessions, bookings, stores and events."""

__version__ = "0.1.0"
