"""Pulumi components of the voice concierge's AWS deployment (one ComponentResource per concern).

The package has its own name because ``platform/`` itself must never be a package: it would shadow
the standard library's ``platform`` module for everything that runs from the repository root.
"""
