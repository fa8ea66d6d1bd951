"""The ``facegate`` command line.

Each sub-command lives in its own module under :mod:`facegate.commands` exposing
``register(subparsers)``; the module is imported only to build the parser, and the heavy work
happens inside its handler.

Exit codes (documented in the README):
0 ok, 1 no match / not verified, 2 usage or configuration error, 3 no face, 4 bad input
(image, payload, model file), 5 runtime failure (broker, camera) that outlasted the retries,
141 (128 + SIGPIPE, as a shell reports it) when the reader of stdout went away (``... | head -1``).

An error is reported once, as ``facegate: error: <message>`` on stderr (with ``-vv`` also the traceback
in the log); a command's own diagnostics (``check-config``'s line-numbered list) are its output.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from facegate import __version__
from facegate.errors import (
    ConfigError,
    EmbeddingError,
    FacegateError,
    GalleryError,
    ImageError,
    ModelError,
    NoFaceError,
)
from facegate.logging import setup_logging

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_USAGE = 2
EXIT_NO_FACE = 3
EXIT_BAD_INPUT = 4
EXIT_RUNTIME = 5
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE

#: sub-command modules, in the order ``facegate --help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "run",
    "detect",
    "verify",
    "represent",
    "find",
    "analyze",
    "enroll",
    "gallery",
    "evaluate",
    "models",
    "bench",
    "check_config",
    "doctor",
    "sign",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facegate",
        description="On-device face recognition: library, CLI and MQTT daemon.",
    )
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"facegate.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"facegate.commands.{name}":
                continue  # command not built yet in this checkout
            raise
        module.register(subparsers)
    return parser


def exit_code_for(err: FacegateError) -> int:
    if isinstance(err, NoFaceError):
        return EXIT_NO_FACE
    if isinstance(err, (ImageError, EmbeddingError, ModelError, GalleryError)):
        return EXIT_BAD_INPUT
    if isinstance(err, ConfigError):
        return EXIT_USAGE
    return EXIT_RUNTIME


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(("WARNING", "INFO", "DEBUG")[min(2, args.verbose)])
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = handler(args)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler below, not at exit
    except FacegateError as err:
        logger.debug("%s failed", args.command, exc_info=True)
        sys.stderr.write(f"facegate: error: {err}\n")
        return exit_code_for(err)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    return code


def _silence_stdout() -> None:
    """The reader of stdout is gone: point stdout at /dev/null so the interpreter's final flush does
    not raise a second BrokenPipeError (the recipe of Python's signal documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (embedded use): nothing to flush
        pass


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_NO_FACE",
    "EXIT_NO_MATCH",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "main",
]
