"""``facegate run --config FILE``: the daemon (what systemd starts).

Events go to the MQTT broker (spooled on disk while it is unreachable) and, with ``--stdout`` or when
stdout is a terminal, also to stdout as JSON lines. Exit 0 on a clean stop (SIGTERM, end of a finite
replay), 2 for a bad configuration, 5 when every camera failed or the models cannot load.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run the daemon", description=__doc__)
    p.add_argument("-c", "--config", required=True, help="YAML configuration file")
    p.add_argument("--stdout", action="store_true", help="also print events as JSON lines on stdout")
    p.add_argument("--no-overlay", action="store_true", help="ignore stored runtime overrides")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.config import load_config
    from facegate.memory import tune_allocator
    from facegate.service import run_service

    tune_allocator()  # before the models, the capture and MQTT threads allocate anything large
    path = Path(args.config)
    config = load_config(path, overlay=not args.no_overlay)
    if not args.verbose:
        logging.getLogger().setLevel(config.logging.level)
    stdout = sys.stdout if (args.stdout or sys.stdout.isatty()) else None
    return run_service(config, config_path=path, stdout=stdout)
