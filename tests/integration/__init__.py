"""Integration tests: real services started on loopback, checked with third-party clients."""
