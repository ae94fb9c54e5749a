"""
A local emulator of the Qikberry (MOBtexting v2) SMS REST API, standard library only.

It never imports the rest of ``airflow_qikberry`` nor Airflow, so it checks the provider independently.
Importing this package is cheap: the server machinery loads on first use of :class:`Emulator`.

Example::

    from airflow_qikberry.emulator import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(token="tok", port=0, seed=1234)).start()
    print(emu.base_url)  # http://127.0.0.1:<port>/api/v2/
    emu.stop()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from airflow_qikberry.emulator.app import Emulator

__all__ = ["Emulator", "EmulatorConfig"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from airflow_qikberry.emulator.app import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
