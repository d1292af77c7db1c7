"""Integration tests: the bridge against real servers on loopback (see tests/services)."""
