"""Shared fixtures. Test-only connectors are registered here (see tests/support)."""

from __future__ import annotations

from bridge import registry

registry.register("journal", "tests.support.journal:JournalConnector")
registry.register("journal_unordered", "tests.support.journal:UnorderedJournalConnector")
