"""A real aiohttp server implementing ``docs/protocol.md``, with fault injection.

``FakeServer`` runs in-process (tests) or as ``python -m fake_server`` (demos).
"""

from .config import ServerConfig
from .server import FakeServer

__all__ = ["FakeServer", "ServerConfig"]
