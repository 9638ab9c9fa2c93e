"""The NATS client protocol's server side, read from a byte stream (sans-I/O).

https://docs.nats.io/reference/reference-protocols/nats-protocol: text operations ended
by CRLF (``INFO``, ``MSG``, ``HMSG``, ``PING``, ``PONG``, ``+OK``, ``-ERR``), a message's
payload (and headers) after its operation line, counted in bytes. Over WebSocket
(``websocket {}`` in nats-server's configuration) the same bytes travel in binary
frames, with no promise that a frame holds whole operations: :class:`NatsReader` keeps
what is left of the last frame, bounded by ``max_line`` and ``max_payload``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProtocolError

__all__ = ["Message", "NatsReader", "Op", "headers_block", "parse_headers"]


@dataclass(frozen=True, slots=True)
class Op:
    """An operation without a payload: ``INFO``, ``PING``, ``PONG``, ``+OK``, ``-ERR``."""

    name: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """``MSG`` / ``HMSG``: a message on ``subject`` for subscription ``sid``."""

    subject: str
    sid: str
    reply: str | None
    headers: bytes
    payload: bytes


class NatsReader:
    """Splits the server's bytes into operations; ProtocolError when they make no sense
    (after which the stream cannot be trusted: the connection must end)."""

    def __init__(self, *, max_line: int = 4096, max_payload: int = 8 * 1024 * 1024) -> None:
        self.max_line = max_line
        self.max_payload = max_payload
        self._buffer = bytearray()

    def reset(self) -> None:
        """A new connection: forget what was half-read."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Op | Message]:
        """Take ``data``; return the operations it completed, in order."""
        buffer = self._buffer
        buffer += data
        out: list[Op | Message] = []
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > self.max_line:
                    raise ProtocolError(f"NATS operation line longer than {self.max_line} bytes")
                return out
            if end > self.max_line:
                raise ProtocolError(f"NATS operation line longer than {self.max_line} bytes")
            line = bytes(buffer[:end]).decode("utf-8", "replace")
            name, _, arg = line.partition(" ")
            name = name.upper()
            if name in ("MSG", "HMSG"):
                message = self._message(name, arg, end + 2)
                if message is None:
                    return out  # the payload has not all arrived yet
                out.append(message)
                continue
            if name not in ("INFO", "PING", "PONG", "+OK", "-ERR"):
                raise ProtocolError(f"unknown NATS operation {name[:16]!r}")
            del buffer[: end + 2]
            out.append(Op(name, arg.strip()))

    def _message(self, name: str, arg: str, start: int) -> Message | None:
        fields = arg.split()
        try:
            if name == "MSG" and len(fields) in (3, 4):
                header_size, total = 0, int(fields[-1])
            elif name == "HMSG" and len(fields) in (4, 5):
                header_size, total = int(fields[-2]), int(fields[-1])
            else:
                raise ValueError(arg)
        except ValueError:
            raise ProtocolError(f"malformed NATS {name} line: {arg[:80]!r}") from None
        if not 0 <= header_size <= total <= self.max_payload:
            raise ProtocolError(f"NATS {name} sizes out of bounds: {header_size} / {total}")
        buffer = self._buffer
        if len(buffer) < start + total + 2:
            return None
        if buffer[start + total : start + total + 2] != b"\r\n":
            raise ProtocolError(f"NATS {name} payload is not followed by CRLF")
        body = bytes(buffer[start : start + total])
        del buffer[: start + total + 2]
        reply = fields[2] if len(fields) == (5 if name == "HMSG" else 4) else None
        return Message(fields[0], fields[1], reply, body[:header_size], body[header_size:])


def headers_block(headers: dict[str, str]) -> bytes:
    """The ``NATS/1.0`` header block for ``headers`` (for ``HPUB``)."""
    lines = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def parse_headers(block: bytes) -> tuple[int | None, dict[str, str]]:
    """The status code (``NATS/1.0 503``: 503; None without one) and the headers."""
    lines = block.decode("utf-8", "replace").split("\r\n")
    status: int | None = None
    first = lines[0].split()
    if len(first) >= 2 and first[1].isdigit():
        status = int(first[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip()] = value.strip()
    return status, headers
