"""``python -m export_image_provider.emulator``: serve until SIGTERM/SIGINT, then exit 0.

Prints exactly one line, ``READY http://HOST:PORT``, on stdout once requests
are served, so a parent process can wait for it and read the URL from it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from . import config as config_module
from .config import EmulatorConfig
from .curve import SHAPES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = EmulatorConfig()
    fields = (config_module.__doc__ or "").partition("Fields")[2]
    parser = argparse.ArgumentParser(
        prog="python -m export_image_provider.emulator",
        description=__doc__,
        epilog=f"config fields{fields}".rstrip() + "\n\nCall counts: GET /_emulator/calls[?detail=1]; "
        "POST /_emulator/calls resets them (see server.py).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--export-seconds", type=float, default=defaults.export_seconds,
                        help="wall-clock duration of an export; 0 completes at once")
    parser.add_argument("--max-active", type=int, default=defaults.max_active,
                        help="active export tasks allowed per account and region")
    parser.add_argument("--progress-curve", default=defaults.progress_curve, choices=sorted(SHAPES),
                        help="the shape of an export's Progress over its duration (curve.py)")
    parser.add_argument("--config", default=None, metavar="JSON",
                        help='further config fields as JSON (listed below), e.g. '
                             '\'{"fail_at_progress": 50}\' or \'{"throttle_fraction": 0.3, "fault_seed": 7}\'')
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        extra = json.loads(args.config) if args.config else {}
        config = EmulatorConfig().updated(
            {**extra, "export_seconds": args.export_seconds, "max_active": args.max_active,
             "progress_curve": args.progress_curve}
        )
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2

    from .server import start_emulator

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emulator = start_emulator(host=args.host, port=args.port, config=config, log_requests=args.log_requests)
    print(f"READY {emulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
