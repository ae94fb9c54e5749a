"""
Who may send an alert: the notifier's claim on one custom id, exact within a process and on one machine.

The API is the notifier's only memory shared across machines, and it offers no atomic "send unless sent":
a lookup of the custom id followed by a send leaves a window (the lookup's answer, the send's round trip
and the API's visibility delay) in which another process can look, find nothing and send too. So before
that lookup an alert is claimed where claims can be atomic:

* in this process, by a lock per custom id (threads, ``async_notify``'s worker threads);
* on this machine, by an exclusive ``flock`` on a file per custom id in a directory shared by the
  processes of one user (``lock_dir``): the file also records that the alert was sent, so a second alert
  waits for the first one's send and then skips, even while the API does not show the first one yet.

Across machines nothing here is atomic (see docs/notifier.md, "Dedupe window").

Example::

    with claim("an-3f0c...", until=time.time() + 600, lock_dir=default_lock_dir(), log=log) as alert:
        if not alert.sent:
            ...  # look the custom id up, send, then alert.mark_sent()
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["Claim", "claim", "default_lock_dir"]

# Lock files of dedupe windows that ended this long ago are removed (no process derives their ids any more).
_PRUNE_AFTER_SECONDS = 3600.0

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
# Custom id -> end of its dedupe window (epoch seconds), for alerts this process sent or found sent.
_sent_here: dict[str, float] = {}
_warned: set[str] = set()


def default_lock_dir() -> Path:
    """Return a directory per user in the system temp directory (shared by the processes of one user)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"airflow-qikberry-alerts-{user}"


class Claim:
    """The right to send the alert ``custom_id`` now: held by one thread of one process on this machine."""

    def __init__(self, custom_id: str, until: float, handle: IO[str] | None) -> None:
        self.custom_id = custom_id
        self.until = until
        self._handle = handle

    @property
    def sent(self) -> bool:
        """True when this process, or (with the machine lock) another process here, sent it already."""
        if _sent_here.get(self.custom_id, 0.0) > time.time():
            return True
        if self._handle is None:
            return False
        self._handle.seek(0)
        return self._handle.read().split()[-1:] == ["sent"]

    def mark_sent(self) -> None:
        """Record that the alert went out (or was found sent), for the rest of its dedupe window."""
        _sent_here[self.custom_id] = self.until
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(f"{self.until:.0f} sent\n")
            self._handle.flush()


@contextlib.contextmanager
def claim(
    custom_id: str, *, until: float, lock_dir: Path | None, log: Any, wait: float = 120.0
) -> Iterator[Claim]:
    """
    Hold the claim on ``custom_id`` (whose dedupe window ends at ``until``) for the block.

    Waits while another thread of this process, or another process sharing ``lock_dir``, holds it; the OS
    releases a machine lock whose process died. Without ``lock_dir`` (or when it cannot be used: the reason
    is logged once) the claim holds within this process only. After ``wait`` seconds (one send's worth: the
    holder is stuck on an API that does not answer) the caller goes on without the claim, so identical alerts
    during an outage do not queue one send's deadline after another; they still look the API up.
    """
    started = time.monotonic()
    with _locks_guard:
        _forget_ended(time.time())
        lock = _locks.setdefault(custom_id, threading.Lock())
    held = lock.acquire(timeout=max(wait, 0.0))
    handle = None
    try:
        if not held:
            log.warning(
                "Qikberry alert %s: still claimed after %.0f s; going on without the claim", custom_id, wait
            )
        elif lock_dir is not None:
            handle = _machine_lock(lock_dir, custom_id, until, log, wait - (time.monotonic() - started))
        yield Claim(custom_id, until, handle)
    finally:
        if handle is not None:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        if held:
            lock.release()


def _forget_ended(now: float) -> None:
    for cid in [cid for cid, until in _sent_here.items() if until <= now]:
        del _sent_here[cid]
        _locks.pop(cid, None)


def _machine_lock(lock_dir: Path, custom_id: str, until: float, log: Any, wait: float) -> IO[str] | None:
    try:
        import fcntl
    except ImportError:  # not a POSIX system: process-wide claims only
        _warn_once(log, "no fcntl on this platform")
        return None
    try:
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = lock_dir / f"{custom_id}.lock"
        handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held past this function, closed by claim()
    except OSError as err:
        _warn_once(log, f"{lock_dir} cannot be used ({err})")
        return None
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                log.warning(
                    "Qikberry alert %s: still claimed by another process after %.0f s; going on without the "
                    "claim",
                    custom_id,
                    wait,
                )
                return None
            time.sleep(0.05)
    handle.seek(0)
    if not handle.read().strip():
        handle.write(f"{until:.0f} open\n")
        handle.flush()
    _prune(lock_dir, custom_id)
    return handle


def _prune(lock_dir: Path, keep: str) -> None:
    """Remove the lock files of windows that ended an hour ago or more (never the one being claimed)."""
    horizon = time.time() - _PRUNE_AFTER_SECONDS
    with contextlib.suppress(OSError):
        for path in lock_dir.glob("*.lock"):
            if path.stem == keep:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                if float(path.read_text(encoding="ascii").split()[0]) < horizon:
                    path.unlink()


def _warn_once(log: Any, reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning(
            "Qikberry alerts: same-machine dedupe is off (%s); alerts are deduplicated within this process "
            "and through the API only",
            reason,
        )
