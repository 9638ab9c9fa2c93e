"""``python -m fake_server``: see :mod:`fake_server.cli`."""

import sys

from .cli import main

sys.exit(main())
