"""The ``rtclient`` command line: ``demo``, ``chat``, ``ping``, ``token``, ``serve``.

- ``rtclient demo``: bots chat through a scripted network storm against an in-process
  fake_server; a report says what was lost (nothing) — exit status 0 only then;
- ``rtclient chat URL --room R``: an interactive chat that shows reconnects, queueing
  and acks (JSON lines when stdin is not a terminal);
- ``rtclient ping URL``: round-trip times, p50 / p95 and the quality level;
- ``rtclient token --user U``: a token for a local fake_server;
- ``rtclient serve``: run fake_server in the foreground (its own flags).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    from .console import chat, ping, token

    parser = argparse.ArgumentParser(
        prog="rtclient", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rtclient {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log warnings (-v) or more (-vv)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run fake_server in the foreground", add_help=False)
    sub.add_parser("demo", help="bots through a scripted network storm", add_help=False)
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, module, text in (
        ("chat", chat, "interactive chat (JSON lines when stdin is not a terminal)"),
        ("ping", ping, "RTT samples, p50 / p95 and quality level"),
        ("token", token, "mint a token for a local fake_server"),
    ):
        module.add_arguments(sub.add_parser(name, help=text, description=text))
        runners[name] = module.run
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rtclient`` command; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from fake_server.cli import main as serve_main

        return serve_main(args[1:], prog="rtclient serve")
    if args and args[0] == "demo":
        from . import demo

        return demo.main(args[1:])
    parser, runners = _parser()
    namespace = parser.parse_args(args)
    # What matters reaches the user as lines and events; library chatter only on request.
    level = {0: logging.ERROR, 1: logging.WARNING}.get(namespace.verbose, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return runners[namespace.command](namespace)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
