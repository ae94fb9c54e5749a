"""The emulator never imports Airflow nor the rest of the provider: it checks the provider independently."""

from __future__ import annotations

import json
import subprocess
import sys

# Runs in a fresh interpreter: imports every emulator module, serves real requests (send, status, a
# webhook push, the control API, the CLI parser), then reports which modules got loaded.
PROBE = r"""
import json, pkgutil, sys, urllib.request

import airflow_qikberry.emulator as package
from airflow_qikberry.emulator import Emulator, EmulatorConfig
from airflow_qikberry.emulator.__main__ import build_parser, config_from_args

for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    __import__(info.name)
config_from_args(build_parser().parse_args(["--number-format", "plus"]))

def call(method, url, body=None, token="iso"):
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": token}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())

with Emulator(EmulatorConfig(token="iso", visibility_delay_seconds=1, paginate_lookups=True)) as emu:
    base = emu.base_url
    hook = call("POST", base + "developer/webhooks", {"name": "h", "uri": emu.url + "/nowhere"})["data"]
    sent = call("POST", base + "sms/send", {"to": "919876543210", "message": "Hi", "sender": "QIKBRY",
                                            "service": "T", "webhook_id": hook["id"], "custom": "c"})
    emu.advance_clock(5)
    call("GET", base + "sms/status?cid=c")
    call("GET", emu.url + "/_emulator/errors")
    emu.reset()

loaded = sorted(sys.modules)
print(json.dumps({
    "emulator_modules": [m for m in loaded if m.startswith("airflow_qikberry.emulator")],
    "forbidden": [
        m for m in loaded
        if m == "airflow" or m.startswith("airflow.")
        or (m.startswith("airflow_qikberry.") and not m.startswith("airflow_qikberry.emulator"))
    ],
}))
"""


def test_emulator_never_imports_airflow_or_the_provider() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The probe really loaded the emulator (so an empty "forbidden" list means something) ...
    assert {"airflow_qikberry.emulator.app", "airflow_qikberry.emulator.server"} <= set(
        report["emulator_modules"]
    )
    # ... and nothing of Airflow or of the provider outside the emulator (the bare package is allowed:
    # its __init__ only sets __version__).
    assert report["forbidden"] == []
