"""The ``flowgen`` command. Each subcommand lives in its own module with ``add_parser`` + ``run``.

User mistakes (:class:`~flowgen.errors.FlowgenError`) print one line on stderr and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules providing ``add_parser(subparsers) -> ArgumentParser`` and ``run(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "flowgen.toy.command",
    "flowgen.train.command",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowgen",
        description="Flow-matching generative models for audio and images.",
        epilog="Run 'flowgen COMMAND --help' for the options and examples of each command.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    from flowgen import __version__

    parser.add_argument("--version", action="version", version=f"flowgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flowgen.errors import FlowgenError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args._run(args) or 0)
    except FlowgenError as err:
        if args.debug:
            raise
        print(f"flowgen {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"flowgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
