"""Notifiers of the Qikberry provider (see ``docs/notifier.md``)."""
