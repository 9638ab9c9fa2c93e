"""Benchmarks: ``python -m benchmarks`` runs the suite (rtclient against bare websockets
and python-socketio, same server in its own process); ``--quick`` for a short run,
``--only NAME`` for one case, ``--check`` to exit 1 when a target is missed; the cases
are the table in ``cases.py``. ``python -m benchmarks.store`` is the store's own
benchmark. Results: docs/benchmarks.md.
"""
