"""Shared fixtures: the real test services (tests/services) and test-only connectors."""

from __future__ import annotations

from bridge import registry

pytest_plugins = ["tests.services.fixtures"]

registry.register("journal", "tests.support.journal:JournalConnector")
registry.register("journal_unordered", "tests.support.journal:UnorderedJournalConnector")
