"""
Deterministic fault injection: which request gets which failure.

Every rule owns a ``random.Random`` seeded from the emulator seed and the rule's position, so the same
seed and the same request sequence always produce the same faults.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

# Kinds applied before the request is processed (nothing is accepted) ...
PRE_KINDS = frozenset({"error", "rate_limit", "latency", "drop_before"})
# ... and after it (the request's effects, e.g. an accepted message, are kept).
POST_KINDS = frozenset({"slow_response", "drop_after_accept"})
KINDS = PRE_KINDS | POST_KINDS

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass
class FaultRule:
    """One fault: where it applies, what it does, and how often."""

    kind: str
    endpoint: str = "*"
    method: str | None = None
    times: int | None = None
    probability: float | None = None
    status: int = 500
    seconds: float | None = None
    seed: int | str | None = None
    after: int = 0
    applied: int = 0
    passed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, method: str, endpoint: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.endpoint == "*" or self.endpoint == endpoint or fnmatchcase(endpoint, self.endpoint)

    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def fires(self) -> bool:
        """Decide (and count) whether this matching rule applies to the current request."""
        if self.passed < self.after:
            # The first `after` matching requests go through untouched: "fail the 4th send" is after=3.
            self.passed += 1
            return False
        if self.exhausted():
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.applied += 1
        return True

    def delay(self, default: float) -> float:
        return default if self.seconds is None else self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "method": self.method,
            "kind": self.kind,
            "times": self.times,
            "probability": self.probability,
            "status": self.status,
            "seconds": self.seconds,
            "seed": self.seed,
            "after": self.after,
            "applied": self.applied,
            "remaining": None if self.times is None else max(0, self.times - self.applied),
        }


def _counting(raw: dict[str, Any], where: str) -> tuple[int | None, float | None, int, int | str | None]:
    """Return the ``times``, ``probability``, ``after`` and ``seed`` of a rule, checked."""
    times, probability = raw.get("times"), raw.get("probability")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"{where}: times must be a positive integer")
    if probability is not None and (
        isinstance(probability, bool)
        or not isinstance(probability, (int, float))
        or not 0.0 <= probability <= 1.0
    ):
        raise ValueError(f"{where}: probability must be a number between 0 and 1")
    after = raw.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"{where}: after must be an integer >= 0")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
        raise ValueError(f"{where}: seed must be an integer or a string")
    return times, None if probability is None else float(probability), after, seed


def parse_rule(raw: Any, index: int, emulator_seed: int) -> FaultRule:
    """Build a :class:`FaultRule` from its JSON form; raises ``ValueError`` with a readable reason."""
    if not isinstance(raw, dict):
        raise ValueError(f"fault {index} must be an object")
    unknown = set(raw) - {
        "endpoint", "method", "kind", "times", "probability", "status", "seconds", "seed", "after"
    }  # fmt: skip
    if unknown:
        raise ValueError(f"fault {index} has unknown key(s): {', '.join(sorted(unknown))}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"fault {index}: kind must be one of {', '.join(sorted(KINDS))}")
    endpoint = raw.get("endpoint", "*")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"fault {index}: endpoint must be a path relative to the base, or '*'")
    endpoint = endpoint.strip("/") or "*"
    method = raw.get("method")
    if method is not None:
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise ValueError(f"fault {index}: method must be GET, POST, PUT, PATCH, DELETE or null")
        method = method.upper()
    times, probability, after, seed = _counting(raw, f"fault {index}")
    status = raw.get("status", 429 if kind == "rate_limit" else 500)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"fault {index}: status must be an HTTP status code")
    seconds = raw.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0
    ):
        raise ValueError(f"fault {index}: seconds must be a number >= 0")
    # A string seed is hashed deterministically by random.Random (unlike hash(), which is salted).
    rng = random.Random(seed if seed is not None else f"{emulator_seed}:{index}")
    return FaultRule(
        kind=kind,
        endpoint=endpoint,
        method=method,
        times=times,
        probability=probability,
        status=status,
        seconds=None if seconds is None else float(seconds),
        seed=seed,
        after=after,
        _rng=rng,
    )


def parse_rules(raw: Any, emulator_seed: int) -> list[FaultRule]:
    if isinstance(raw, dict) and "faults" in raw:
        raw = raw["faults"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError("faults must be a list of fault objects")
    return [parse_rule(item, i, emulator_seed) for i, item in enumerate(raw)]


def pick(rules: Sequence[FaultRule], method: str, endpoint: str) -> FaultRule | None:
    """Return the first matching rule that fires for this request, if any (the caller holds the lock)."""
    for rule in rules:
        if rule.matches(method, endpoint) and rule.fires():
            return rule
    return None


# ---------------------------------------------------------------------------- push faults
# What the emulator's own calls to webhooks meet: a receiver that cannot be reached, or one that answers an
# error, without any receiver having to misbehave.
PUSH_KINDS = frozenset({"unreachable", "error"})
PUSH_TARGETS = frozenset({"dlr", "challenge", "*"})


@dataclass
class PushFaultRule(FaultRule):
    """
    A fault on the emulator's calls to a webhook.

    ``endpoint`` holds the webhook id glob, ``method`` the call (``dlr`` push or verification ``challenge``;
    ``*`` both).
    """

    def to_dict(self) -> dict[str, Any]:
        return {
            "webhook_id": self.endpoint,
            "push": self.method or "*",
            "kind": self.kind,
            "times": self.times,
            "probability": self.probability,
            "status": self.status,
            "seed": self.seed,
            "after": self.after,
            "applied": self.applied,
            "remaining": None if self.times is None else max(0, self.times - self.applied),
        }


def parse_push_rules(raw: Any, emulator_seed: int) -> list[PushFaultRule]:
    """``[{"webhook_id": glob, "push": "dlr"|"challenge"|"*", "kind": "unreachable"|"error", ...}]``."""
    if isinstance(raw, dict) and "faults" in raw:
        raw = raw["faults"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError("push faults must be a list of fault objects")
    rules: list[PushFaultRule] = []
    for index, item in enumerate(raw):
        where = f"push fault {index}"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object")
        unknown = set(item) - {
            "webhook_id",
            "push",
            "kind",
            "times",
            "probability",
            "status",
            "seed",
            "after",
        }
        if unknown:
            raise ValueError(f"{where} has unknown key(s): {', '.join(sorted(unknown))}")
        kind = item.get("kind")
        if kind not in PUSH_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(sorted(PUSH_KINDS))}")
        webhook_id = item.get("webhook_id", "*")
        if not isinstance(webhook_id, str) or not webhook_id:
            raise ValueError(f"{where}: webhook_id must be a webhook id (a glob) or '*'")
        push = item.get("push", "dlr")
        if push not in PUSH_TARGETS:
            raise ValueError(f"{where}: push must be 'dlr', 'challenge' or '*'")
        status = item.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{where}: status must be an HTTP status code")
        times, probability, after, seed = _counting(item, where)
        rng = random.Random(seed if seed is not None else f"{emulator_seed}:push:{index}")
        rules.append(
            PushFaultRule(
                kind=kind,
                endpoint=webhook_id,
                method=None if push == "*" else push,
                times=times,
                probability=probability,
                status=status,
                seed=seed,
                after=after,
                _rng=rng,
            )
        )
    return rules
