"""Booking domain: validation rules and the service both the REST API and the voice tools call."""
