"""The ``rtclient`` command line: ``rtclient serve`` and friends."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rtclient`` command; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="rtclient", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run fake_server in the foreground", add_help=False)
    if args and args[0] == "serve":
        from fake_server.cli import main as serve_main

        return serve_main(args[1:], prog="rtclient serve")
    parser.parse_args(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
