"""Wire-level emulators of cloud services the runtime talks to, for tests and benches (no AWS account)."""
