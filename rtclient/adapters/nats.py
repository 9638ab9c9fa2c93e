"""NATS over WebSocket with JetStream: an adapter with acks and resume positions.

A second, real envelope for generic mode (nats-server 2.9, ``websocket {}`` and
``jetstream {}`` in its configuration). What it maps:

- ``emit(subject, data)`` publishes (``HPUB``) to a JetStream stream, with a reply
  subject and the message id as ``Nats-Msg-Id``: the stream's **PubAck** (``{"stream",
  "seq"}``, ``"duplicate": true`` for a resend the stream already had) is the ack, so
  an emit is acknowledged, and a resend after a lost ack is deduplicated by the server
  (within the stream's duplicate window, 2 minutes by default). No stream for the
  subject (a ``503`` no-responders status) or a JetStream error refuses it;
- every connection creates an ephemeral push consumer on ``stream`` (``filter``
  subjects), delivered to a subject of its own. Each delivery's reply subject
  (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.…``) carries the stream
  sequence: the **resume position**. The next connection's consumer starts at the
  sequence after the last one taken, so nothing is missed;
- before it makes the consumer, each connection asks for the stream's info
  (``$JS.API.STREAM.INFO``): a stream whose ``created`` time is not the one seen
  before (deleted and recreated) or whose last sequence is behind the resume position
  (its data lost) is a new sequence: :class:`Reset` (the Client reports a Gap), and
  the consumer delivers the new stream from its start, all of it after the reset;
- the token is the CONNECT's ``auth_token``; the ``PONG`` to a ``PING`` sent after it
  says the server accepted the connection; ``-ERR 'Authorization Violation'`` ends it
  as a 4001 (fatal, as a rejected token on any transport); the server's ``PING`` is
  answered with ``PONG``.

``call`` is a NATS request: published with a reply subject, the first answer is the
result (a service listening on the subject, or JetStream's own API).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from ..errors import ProtocolError
from .base import Acked, Closing, Frame, Incoming, Ready, Received, Refused, Reply, Reset
from .nats_wire import Message, NatsReader, Op, headers_block, parse_headers

__all__ = ["NatsJetStream"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT = re.compile(r"[^\s.*>]+(\.[^\s.*>]+)*")
_ACKS, _DELIVERIES, _INFO, _CREATED = "1", "2", "3", "4"  # subscription ids
_HEADER_ROOM = 128
_PING = b"PING\r\n"


class NatsJetStream:
    """Publish to and follow one JetStream stream over NATS's WebSocket listener.

    :param stream: the stream's name (it must exist: create it with the ``nats`` CLI,
        a configuration, or JetStream's API).
    :param filter: the subjects to follow (a NATS subject, wildcards allowed).
    :param start: where the very first consumer starts: ``"new"`` (events from now
        on) or ``"all"`` (the whole stream). Later connections resume after the last
        event taken, whatever this says.
    """

    acks = True
    resumes = True
    sends_token = True
    greets = True

    def __init__(self, stream: str, filter: str = ">", *, start: str = "new") -> None:
        if not _TOKEN.fullmatch(stream):
            raise ValueError(f"not a stream name: {stream!r}")
        if start not in ("new", "all"):
            raise ValueError("start is 'new' or 'all'")
        self.stream = stream
        self.filter = filter
        self.start = start
        self._inbox = f"_INBOX.{secrets.token_hex(8)}"
        self._reader = NatsReader()
        self._connections = 0
        self._floor: int | None = None
        """The stream's last sequence when the first consumer was made with ``new``:
        where a later one resumes if no event was taken in between."""
        self._create_reply = ""
        self._info_reply = ""
        self._deliver = ""
        self._resume: int | None = None
        self._policy = start
        """Where a consumer starts without a position: ``start``, then ``all`` after a
        reset (everything in a new stream came after it)."""
        self._epoch: str | None = None
        """The ``created`` time of the stream the positions belong to."""
        self._accepted = False
        self._max_payload: int | None = None

    def opening(self, token: str | None, resume: int | None) -> list[Frame]:
        """CONNECT, the subscriptions, and a consumer from ``resume`` + 1."""
        self._reader.reset()
        self._accepted = False
        self._connections += 1
        n = self._connections
        deliver = f"{self._inbox}.d.{n}"
        self._create_reply = f"{self._inbox}.c.{n}"
        connect: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "protocol": 1,
            "headers": True,
            "no_responders": True,
            "lang": "python-rtclient",
            "version": "1",
        }
        if token:
            connect["auth_token"] = token
        self._deliver = deliver
        self._resume = resume
        self._info_reply = f"{self._inbox}.i.{n}"
        return [
            b"CONNECT "
            + json.dumps(connect).encode()
            + b"\r\n"
            + f"SUB {self._inbox}.r.* {_ACKS}\r\nSUB {self._inbox}.c.* {_CREATED}\r\n".encode()
            + f"SUB {self._inbox}.i.* {_INFO}\r\nSUB {deliver} {_DELIVERIES}\r\n".encode()
            + _pub(f"$JS.API.STREAM.INFO.{self.stream}", self._info_reply, b"", b"")
        ]  # the PING whose PONG is Ready goes with the consumer (_stream_info)

    def _create_consumer(self, after: int | None, policy: str) -> bytes:
        """The consumer of this connection: from ``after`` + 1, else by ``policy``."""
        config: dict[str, Any] = {
            "deliver_subject": self._deliver,
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": self.filter,
            "inactive_threshold": 30_000_000_000,  # ns: a gone connection's consumer goes
        }
        if after is not None:
            config.update(deliver_policy="by_start_sequence", opt_start_seq=after + 1)
        else:
            config["deliver_policy"] = policy
        create = json.dumps({"stream_name": self.stream, "config": config}).encode()
        return _pub(f"$JS.API.CONSUMER.CREATE.{self.stream}", self._create_reply, b"", create)

    def encode(self, name: str, data: Any, message_id: str | None) -> list[Frame]:
        """``HPUB`` with ``Nats-Msg-Id`` and a reply subject (``PUB`` without an id)."""
        if not _SUBJECT.fullmatch(name):
            raise ValueError(f"not a NATS subject to publish to: {name!r}")
        payload = data if isinstance(data, bytes) else json.dumps(data).encode()
        if message_id is None:
            return [_pub(name, None, b"", payload)]
        if not _TOKEN.fullmatch(message_id):
            raise ValueError(f"a message id NATS cannot carry in a subject: {message_id!r}")
        headers = headers_block({"Nats-Msg-Id": message_id})
        return [_pub(name, f"{self._inbox}.r.{message_id}", headers, payload)]

    def decode(self, frame: Frame) -> list[Incoming]:
        """Deliveries, PubAcks, PONGs; a broken stream ends the connection (retried)."""
        try:
            ops = self._reader.feed(frame.encode() if isinstance(frame, str) else frame)
        except ProtocolError as exc:
            self._reader.reset()
            return [Closing(1011, f"unreadable NATS stream: {exc}")]
        out: list[Incoming] = []
        for op in ops:
            if isinstance(op, Message):
                if op.subject == self._info_reply:
                    out.extend(self._stream_info(op.payload))
                    continue
                item = self._message(op)
                if item is not None:
                    out.append(item)
            else:
                out.extend(self._op(op))
        return out

    def _op(self, op: Op) -> list[Incoming]:
        if op.name == "PING":
            return [Reply(b"PONG\r\n")]
        if op.name == "-ERR":
            reason = op.arg.strip("'")
            lowered = reason.lower()
            if "authorization violation" in lowered:
                # Not the server's words: the redactor masks whatever follows
                # "Authorization", which left "(Authorization [redacted]".
                return [Closing(4001, "NATS refused the credentials (not authorized)")]
            if "authentication expired" in lowered:
                return [Closing(4002, f"NATS: the credentials expired ({reason[:60]})")]
            if "permissions violation" in reason.lower():  # the connection stays
                return [Received("error", {"code": "NATS_PERMISSION", "message": reason})]
            return [Closing(1011, reason)]  # nats-server closes after any other -ERR
        if op.name == "INFO":
            self._max_payload = _max_payload(op.arg)
        elif op.name == "PONG" and not self._accepted:
            self._accepted = True
            limit = self._max_payload
            # Room for the HPUB's header block (Nats-Msg-Id): a larger publish makes
            # nats-server close the connection (Maximum Payload Violation).
            return [Ready(None if limit is None else max(0, limit - _HEADER_ROOM))]
        return []  # +OK, the PONG of a PING of ours

    def _message(self, msg: Message) -> Incoming | None:
        status, _ = parse_headers(msg.headers) if msg.headers else (None, {})
        if msg.sid == _DELIVERIES:
            position = _stream_sequence(msg.reply)
            if position is None:
                return None  # flow control or heartbeat (not asked for): nothing to take
            return Received(msg.subject, _data(msg.payload), position)
        if msg.subject == self._create_reply:
            return self._consumer_created(msg.payload)
        if not msg.subject.startswith(f"{self._inbox}.r."):
            return None
        message_id = msg.subject.rsplit(".", 1)[1]
        if status == 503:
            return Refused(message_id, "NO_RESPONDERS", "no stream or service takes this subject")
        answer = _data(msg.payload)
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            code = str(error.get("err_code", error.get("code", "ERROR")))
            return Refused(message_id, f"JETSTREAM_{code}", str(error.get("description", "")))
        return Acked(message_id, answer)

    def _stream_info(self, payload: bytes) -> list[Incoming]:
        """The stream's info: a Reset if it is not the sequence the positions are of,
        then the consumer (written back at once)."""
        answer = _data(payload)
        info = answer if isinstance(answer, dict) else {}
        error = info.get("error")
        if isinstance(error, dict):
            message = f"stream {self.stream}: {error.get('description', '')}"
            return [Received("error", {"code": "JETSTREAM", "message": message}), Reply(_PING)]
        created = info.get("created")
        created = created if isinstance(created, str) and created else None
        state = info.get("state")
        last = state.get("last_seq") if isinstance(state, dict) else None
        after = self._resume if self._resume is not None else self._floor
        behind = isinstance(last, int) and after is not None and last < after
        renewed = created is not None and self._epoch is not None and created != self._epoch
        out: list[Incoming] = []
        if renewed or behind:
            out.append(Reset(self.stream, self._epoch, created))
            after, self._policy, self._floor = None, "all", None  # all of it is after it
        if created is not None:
            self._epoch = created
        # The PONG to this PING says the CONNECT was accepted (Ready), and comes once the
        # server read the consumer's creation: what is published after connect() is seen.
        out.append(Reply(self._create_consumer(after, self._policy) + _PING))
        return out

    def _consumer_created(self, payload: bytes) -> Incoming | None:
        answer = _data(payload)
        if not isinstance(answer, dict):
            return None
        error = answer.get("error")
        if isinstance(error, dict):
            message = f"consumer on {self.stream}: {error.get('description', '')}"
            return Received("error", {"code": "JETSTREAM", "message": message})
        delivered = answer.get("delivered")
        last = delivered.get("stream_seq") if isinstance(delivered, dict) else None
        if self._floor is None and isinstance(last, int) and not isinstance(last, bool):
            self._floor = last
        return None


def _max_payload(info: str) -> int | None:
    """``max_payload`` from an INFO's JSON (None if absent or unreadable)."""
    try:
        value = json.loads(info).get("max_payload")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _pub(subject: str, reply: str | None, headers: bytes, payload: bytes) -> bytes:
    target = f"{subject} {reply}" if reply else subject
    if headers:
        size = len(headers) + len(payload)
        return f"HPUB {target} {len(headers)} {size}\r\n".encode() + headers + payload + b"\r\n"
    return f"PUB {target} {len(payload)}\r\n".encode() + payload + b"\r\n"


def _stream_sequence(reply: str | None) -> int | None:
    """The stream sequence in a JetStream delivery's ``$JS.ACK`` reply subject."""
    if reply is None or not reply.startswith("$JS.ACK."):
        return None
    tokens = reply.split(".")
    # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    # v2: $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>
    #     .<pending>[.<token>]
    index = 5 if len(tokens) == 9 else 7 if len(tokens) >= 11 else None
    if index is None or not tokens[index].isdigit():
        return None
    return int(tokens[index])


def _data(payload: bytes) -> Any:
    """JSON if it is JSON, else text, else the bytes."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return payload
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
