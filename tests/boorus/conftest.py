"""Booru tests share the corpus, migration and fast-settings fixtures defined in tests/conftest.py."""

from tests.helpers import SITES, fast_settings

__all__ = ["SITES", "fast_settings"]
