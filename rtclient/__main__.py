"""``python -m rtclient``: the same as the ``rtclient`` command."""

from .cli import main

raise SystemExit(main())
