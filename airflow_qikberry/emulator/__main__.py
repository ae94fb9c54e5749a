"""``python -m airflow_qikberry.emulator``: run the emulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from airflow_qikberry.emulator.app import Emulator
from airflow_qikberry.emulator.config import (
    DEFAULT_SERVICES,
    DEFAULT_TOKEN,
    DLR_SPREAD_ORDERS,
    NUMBER_FORMATS,
    STATUS_ORDERS,
    EmulatorConfig,
)
from airflow_qikberry.emulator.developer import ROUTINGS, VERIFICATIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_qikberry.emulator",
        description="Run a local Qikberry v2 SMS API emulator (see docs/emulator.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8055, help="TCP port, 0 for a free one (default 8055)")
    parser.add_argument(
        "--token",
        default=None,
        help="token clients must send (default: $QIKBERRY_EMULATOR_TOKEN, else the documented default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the probabilistic fault rules")
    parser.add_argument("--dlr-delay", type=float, default=2.0, help="seconds until a message is final")
    parser.add_argument("--credits", type=float, default=None, help="starting credits of every service")
    parser.add_argument("--rate-limit", type=int, default=1000, help="GET requests per minute per token")
    parser.add_argument(
        "--visibility-delay",
        type=float,
        default=0.0,
        help="seconds of emulator time before an accepted message shows in sms/status (default 0)",
    )
    parser.add_argument(
        "--number-format",
        choices=NUMBER_FORMATS,
        default="plain",
        help="how responses write mobile numbers: plain 919876543210 or plus +919876543210 (default plain)",
    )
    parser.add_argument(
        "--status-page-size",
        type=int,
        default=100,
        help="rows per page of paginated sms/status (default 100)",
    )
    parser.add_argument(
        "--paginate-lookups",
        action="store_true",
        help="paginate sms/status id / cid / mobile lookups like group_id / date queries",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="emulator time moves only through the control API's clock advance (tests of exact delays)",
    )
    parser.add_argument(
        "--dlr-spread",
        type=float,
        default=0.0,
        help="seconds over which one request's delivery reports arrive after the DLR delay (default 0)",
    )
    parser.add_argument(
        "--dlr-spread-order",
        choices=DLR_SPREAD_ORDERS,
        default="submit",
        help="order in which spread delivery reports arrive: submit or random (default submit)",
    )
    parser.add_argument(
        "--status-order",
        choices=STATUS_ORDERS,
        default="submit",
        help="order of sms/status rows and group pages: submit or newest_first (default submit)",
    )
    parser.add_argument(
        "--bulk-drops-custom",
        action="store_true",
        help="store rows accepted through sms/bulk without their custom id",
    )
    parser.add_argument(
        "--suppressed-numbers",
        default="",
        metavar="N1,N2",
        help="numbers (country code + digits) left out of every send silently, as opted out (default none)",
    )
    parser.add_argument(
        "--refused-numbers",
        default="",
        metavar="N1,N2",
        help="numbers whose send is refused with a 422 naming the node, as a blocked series (default none)",
    )
    parser.add_argument(
        "--refusal-without-node",
        action="store_true",
        help="refuse those numbers with a 422 whose message names neither the node nor the number",
    )
    parser.add_argument(
        "--webhook-retries",
        type=int,
        default=3,
        help="retries after a failed delivery-report push (default 3)",
    )
    parser.add_argument(
        "--webhook-retry-interval",
        type=float,
        default=1800.0,
        help="emulator seconds between push attempts (default 1800)",
    )
    parser.add_argument(
        "--webhook-verification",
        choices=VERIFICATIONS,
        default="challenge",
        help="challenge on webhook creation: challenge (a failure saves it inactive), reject, off",
    )
    parser.add_argument(
        "--webhook-routing",
        choices=ROUTINGS,
        default="webhook_id_first",
        help="where a report goes when its send named a webhook_id and subscriptions exist too",
    )
    parser.add_argument(
        "--templates-file",
        default=None,
        metavar="PATH",
        help='JSON file {"senders": [...], "templates": [...]}: the DLT senders and templates to start with',
    )
    parser.add_argument(
        "--dlt-mode",
        action="store_true",
        help="check sends carrying a template_id (and sends by template) like a DLT network does",
    )
    parser.add_argument(
        "--templates-unavailable",
        type=int,
        default=None,
        metavar="STATUS",
        help="answer every sms/templates request with this HTTP error status (e.g. 403)",
    )
    return parser


def _templates_file(path: str | None) -> tuple[list[Any], list[Any]]:
    if path is None:
        return [], []
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with 'senders' and 'templates' lists")
    return data.get("senders", []), data.get("templates", [])


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Return the :class:`EmulatorConfig` the parsed command line asks for (not validated yet)."""
    token = args.token or os.environ.get("QIKBERRY_EMULATOR_TOKEN") or DEFAULT_TOKEN
    config = EmulatorConfig(
        token=token,
        host=args.host,
        port=args.port,
        seed=args.seed,
        dlr_delay_seconds=args.dlr_delay,
        rate_limit_per_minute=args.rate_limit,
        visibility_delay_seconds=args.visibility_delay,
        number_format=args.number_format,
        status_page_size=args.status_page_size,
        paginate_lookups=args.paginate_lookups,
        manual_clock=args.manual_clock,
        bulk_keeps_custom=not args.bulk_drops_custom,
        dlr_spread_seconds=args.dlr_spread,
        dlr_spread_order=args.dlr_spread_order,
        status_order=args.status_order,
        suppressed_numbers=[n.strip() for n in args.suppressed_numbers.split(",") if n.strip()],
        refused_numbers=[n.strip() for n in args.refused_numbers.split(",") if n.strip()],
        refusal_names_node=not args.refusal_without_node,
        webhook_retries=args.webhook_retries,
        webhook_retry_interval=args.webhook_retry_interval,
        webhook_verification=args.webhook_verification,
        webhook_routing=args.webhook_routing,
        dlt_mode=args.dlt_mode,
        templates_unavailable_status=args.templates_unavailable,
    )
    config.senders, config.templates = _templates_file(args.templates_file)
    if args.credits is not None:
        config.credits = {code: args.credits for code in DEFAULT_SERVICES}
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        emulator = Emulator(config_from_args(args)).start()
    except (ValueError, OSError) as exc:
        print(f"Cannot start the Qikberry emulator: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Never print the token itself: the banner only says whether one was given.
    print(f"Qikberry emulator listening on {emulator.base_url} (token: set)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
