"""The emulator as a separate process, shared by the benchmark scripts (run as ``python bench/x.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(port: int, token: str, *extra_args: str) -> subprocess.Popen[str]:
    """Start ``python -m airflow_qikberry.emulator`` on ``port`` and wait for its banner."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_qikberry.emulator",
            "--port",
            str(port),
            "--token",
            token,
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    if "listening" not in banner:
        proc.kill()
        raise SystemExit(f"emulator did not start: {banner!r}")
    return proc
