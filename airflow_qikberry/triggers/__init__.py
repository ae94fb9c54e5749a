"""Triggers of the Qikberry provider (they run in the triggerer: async, read-only)."""
