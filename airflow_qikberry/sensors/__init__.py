"""Sensors of the Qikberry provider."""
