"""The booking-domain language model: corpus generator and builder (artefacts cached, never hand-edited)."""
