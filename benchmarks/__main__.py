"""``python -m benchmarks``: the whole suite (``--quick``, ``--only NAME``); see suite.py."""

from __future__ import annotations

import sys

from .suite import main

sys.exit(main())
