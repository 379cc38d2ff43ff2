"""Operator and CI tools that are not part of the shipped runtime (the deployment rehearsal)."""
