"""A tiny in-memory server that speaks docs/protocol.md to a Session, for unit tests.

No sockets and no clock: the test decides when frames travel (``deliver``), which
are lost, doubled or reordered, and when the connection drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtclient.session import Session

Envelope = dict[str, Any]


@dataclass
class SimServer:
    """Server state: per-room logs, dedupe table, the one connection's memberships."""

    epoch: str = "e1"
    logs: dict[str, list[Envelope]] = field(default_factory=dict)
    dedupe: dict[str, tuple[str, int]] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)
    wire: list[Envelope] = field(default_factory=list)
    """Frames on their way to the client, in order."""
    connected: bool = False
    lose_acks: int = 0
    page_limit: int = 3
    commits: int = 0
    reverse_pages: int = 0
    """Misbehave: the next n sync pages list their events backwards."""
    holey_pages: int = 0
    """Misbehave: the next n sync pages of 2+ events leave out their second event."""
    short_pages: int = 0
    """Misbehave: the next n last sync pages leave out their last event (``more`` false)."""
    mended: dict[str, str] = field(default_factory=dict)
    """Room -> the sync request answered with a hole or short: the room's next other
    sync request (the client asking again) is answered in full, or the hole would be
    a real gap."""

    # -- connection -------------------------------------------------------------------

    def open(self, session: Session) -> None:
        """Open a connection and queue the welcome."""
        self.connected = True
        self.joined.clear()
        self.wire.clear()
        session.connection_opened()
        self.wire.append({"type": "connected", "payload": {"userId": "me", "epoch": self.epoch}})

    def drop(self) -> None:
        """The connection is gone: frames in transit are lost, memberships end."""
        self.connected = False
        self.joined.clear()
        self.wire.clear()

    def reset_log(self) -> None:
        """A restart that lost the log: new epoch, empty logs and dedupe table."""
        self.epoch = self.epoch + "'"
        self.logs.clear()
        self.dedupe.clear()

    # -- traffic ----------------------------------------------------------------------

    def take(self, session: Session) -> None:
        """Process everything the session wants to send."""
        for envelope in session.data_to_send():
            if self.connected:
                self.handle(envelope)

    def deliver(self, session: Session, now: float = 0.0, *, limit: int | None = None) -> int:
        """Hand frames on the wire to the session, processing its replies; returns count."""
        count = 0
        self.take(session)
        while self.wire and (limit is None or count < limit):
            session.receive(self.wire.pop(0), now)
            count += 1
            self.take(session)
        return count

    def post(self, room: str, text: str, sender: str = "other") -> int:
        """Another user posts in ``room``: logged and broadcast. Returns the event id."""
        return self._commit(room, text, sender, f"{sender}-{self.commits}")

    def handle(self, envelope: Envelope) -> None:
        """Process one request from the client."""
        type_, rid, p = envelope["type"], envelope.get("id"), envelope.get("payload", {})
        if type_ == "room:join":
            self.joined.add(p["roomId"])
            log = self.logs.setdefault(p["roomId"], [])
            self._ack(
                rid,
                {
                    "roomId": p["roomId"],
                    "members": ["me"],
                    "epoch": self.epoch,
                    "lastEventId": len(log),
                },
            )
        elif type_ == "room:leave":
            self.joined.discard(p["roomId"])
            self._ack(rid, {"roomId": p["roomId"]})
        elif type_ == "sync:messages":
            log = self.logs.setdefault(p["roomId"], [])
            after = p["lastEventId"] if p.get("epoch") in (None, self.epoch) else 0
            truncated = p.get("epoch") not in (None, self.epoch)
            page = log[after : after + min(p["limit"], self.page_limit)]
            more = after + len(page) < len(log)
            if p["roomId"] in self.mended:
                if self.mended[p["roomId"]] != rid:
                    del self.mended[p["roomId"]]
            elif self.holey_pages and len(page) >= 2:
                self.holey_pages -= 1
                self.mended[p["roomId"]] = rid
                page = page[:1] + page[2:]
            elif self.short_pages and page and not more:
                self.short_pages -= 1
                self.mended[p["roomId"]] = rid
                page = page[:-1]
            if self.reverse_pages and len(page) >= 2:
                self.reverse_pages -= 1
                page = page[::-1]
            self._ack(
                rid,
                {
                    "roomId": p["roomId"],
                    "epoch": self.epoch,
                    "events": page,
                    "more": more,
                    "truncated": truncated,
                    "lastEventId": len(log),
                },
            )
        elif type_ == "chat:send":
            if rid in self.dedupe:
                room, event_id = self.dedupe[rid]
                self._ack(rid, {"roomId": room, "eventId": event_id, "duplicate": True})
            elif p["roomId"] not in self.joined:
                self._error(rid, "NOT_IN_ROOM")
            else:
                event_id = self._commit(p["roomId"], p["text"], "me", rid)
                self.dedupe[rid] = (p["roomId"], event_id)
                if self.lose_acks:
                    self.lose_acks -= 1
                else:
                    self._ack(rid, {"roomId": p["roomId"], "eventId": event_id, "duplicate": False})
        else:
            self._error(rid, "UNKNOWN_TYPE")

    def _commit(self, room: str, text: str, sender: str, message_id: str) -> int:
        log = self.logs.setdefault(room, [])
        event = {
            "roomId": room,
            "eventId": len(log) + 1,
            "epoch": self.epoch,
            "messageId": message_id,
            "from": sender,
            "text": text,
        }
        log.append(event)
        self.commits += 1
        if self.connected and room in self.joined:
            self.wire.append({"type": "chat:message", "payload": dict(event)})
        return int(event["eventId"])

    def _ack(self, rid: object, payload: Envelope) -> None:
        self.wire.append({"type": "ack", "id": rid, "payload": {"success": True, **payload}})

    def _error(self, rid: object, code: str, **extra: Any) -> None:
        error = {"code": code, "message": code.lower(), **extra}
        self.wire.append({"type": "ack", "id": rid, "payload": {"success": False, "error": error}})
