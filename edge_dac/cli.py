"""The ``edge-dac`` command line.

Each sub-package registers its own sub-commands through a ``register(subparsers)`` function in
its ``cli`` module; those modules import their heavy dependencies (torch, zmq) only when a
command runs, so ``edge-dac --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from loguru import logger

from edge_dac import __version__
from edge_dac.errors import EdgeDacError
from edge_dac.log import LOG_LEVELS, setup_logging

# Modules with a ``register(subparsers)`` function, in the order their commands are listed.
COMMAND_MODULES = (
    "edge_dac.caption_cli",
    "edge_dac.data.cli",
    "edge_dac.daemon.cli",
    "edge_dac.engines.cli",
    "edge_dac.evaluation.cli",
    "edge_dac.training.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-dac",
        description="Streaming audio captioning with a diffusion captioner (DAC).",
    )
    parser.add_argument("--version", action="version", version=f"edge-dac {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real missing dependency, not an absent command module
                raise
            continue
        module.register(subparsers)
    return parser


def _before_parsing(argv: list[str]) -> tuple[str | None, str]:
    """The sub-command named in ``argv`` and the ``--log-level`` given before it, found before the
    parser (which imports every command's module) exists; INFO for a bad level, which the parser
    then names."""
    level = "INFO"
    args = iter(argv)
    for arg in args:
        if arg == "--log-level":
            value = next(args, "")
            level = value if value.upper() in LOG_LEVELS else level
        elif not arg.startswith("-"):
            return arg, level
    return None, level


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, level = _before_parsing(argv)
    if command == "run":
        # The log's format first: a signal during start-up is logged in the daemon's own format.
        setup_logging(level)
        # Before the sub-command modules are imported (torch takes seconds): from here on SIGTERM and
        # SIGINT end the daemon's process with status 0 at any moment (edge_dac/daemon/signals.py).
        from edge_dac.daemon.signals import install_signals

        install_signals()
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeDacError as error:
        logger.error(str(error))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
