"""
Where a delivery-event watcher keeps its memory: its asset's state store (Airflow 3.3+).

The trigger is given an accessor of the asset state store of every asset it watches (``asset_state_store``);
the memory is written to each, as a JSON object (readable in the UI). Where Airflow has no state store
(before 3.3) or gives none, the memory lives in the process only.

Example::

    store = MemoryStore(trigger.asset_state_store, "qikberry.delivery_events.<digest>")
    memory = EventMemory.from_json(await store.load())
    await store.save(memory.to_json())
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MemoryStore"]


class MemoryStore:
    """
    The watcher's memory in its asset's state store (every asset it watches).

    In the process only where Airflow has no state store (before 3.3) or gives none.
    """

    def __init__(self, store: Any, key: str) -> None:
        self.key = key
        self.accessors: list[Any] = []
        if store is not None:
            by_name = getattr(store, "_by_name", None)
            by_uri = getattr(store, "_by_uri", None)
            if isinstance(by_name, dict) and isinstance(by_uri, dict):
                self.accessors = [*by_name.values(), *by_uri.values()]
            elif hasattr(store, "aget"):
                self.accessors = [store]
        self.saved: str | None = None

    @property
    def durable(self) -> bool:
        return bool(self.accessors)

    async def load(self) -> str | None:
        for accessor in self.accessors:
            value = await accessor.aget(self.key)
            if value:
                self.saved = (
                    value
                    if isinstance(value, str)
                    else json.dumps(value, sort_keys=True, separators=(",", ":"))
                )
                return self.saved
        return None

    async def save(self, memory: str) -> None:
        """Store the memory (as a JSON object, readable in the UI) unless it is what is stored already."""
        if memory == self.saved:
            return
        for accessor in self.accessors:
            await accessor.aset(self.key, json.loads(memory))
        self.saved = memory
