"""The Client's generic-mode operations: :class:`GenericOps`, a base of :class:`~rtclient.Client`.

``emit``, ``emit_nowait`` and ``call`` send any event (``protocol="generic"``, see
docs/generic.md); each records itself in the session and waits for its outcome through
:class:`~rtclient._routing.OutcomeRouter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._connection import in_hook
from ._routing import OutcomeRouter
from .errors import RtClientError

__all__ = ["GenericOps"]


class GenericOps(OutcomeRouter):
    """``emit``, ``emit_nowait`` and ``call``; the Client sets up what is declared here."""

    _acks: bool
    _check_emit: Callable[[str, Any], None]
    _clock: Callable[[], float]

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        ack: bool = True,
        ttl: float | None = None,
        timeout: float | None = None,
        message_id_field: str | None = "messageId",
    ) -> Any:
        """Emit any event (generic mode); with ``ack``, return the server's ack arguments.

        Queued while offline and sent again after reconnects until acknowledged, like
        :meth:`send`; a dict ``data`` carries the message id under ``message_id_field``
        so the receiver can drop duplicates. ``ack=False`` returns once the event was
        written to a live connection. ``data`` must be encodable: JSON values, plus
        ``bytes`` (MessagePack, or Socket.IO's binary attachments); TypeError at once
        (on a raw WebSocket the adapter decides: TypeError or ValueError at once).
        From an :meth:`on_connect` hook it is written at once, ahead of the outbox
        (the rejoin comes before the messages queued while offline).

        On a raw WebSocket whose adapter has no acks, an emit is done (None) once it
        was written to a live connection: nothing else can tell.
        """
        self._check_emit(event, data)
        future = self._waiter(
            self._session.emit(
                event,
                data,
                self._clock(),
                ack=ack and self._acks,
                ttl=ttl,
                message_id_field=message_id_field,
                early=self._in_hook(),
            )
        )
        self._pump(wake_writer=False)  # _await writes it
        return await self._await(future, timeout)

    def emit_nowait(
        self, event: str, data: Any = None, *, ack: bool = True, ttl: float | None = None
    ) -> str:
        """Queue an event (generic mode) and return its message id at once."""
        self._check_emit(event, data)
        message_id = self._session.emit(
            event, data, self._clock(), ack=ack and self._acks, ttl=ttl, early=self._in_hook()
        )
        self._pump()
        return message_id

    async def call(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Emit ``event`` and return the ack's arguments; not kept in the outbox.

        Sent as soon as a connection is up — also from an :meth:`on_connect` hook,
        before the outbox flushes. If the connection drops first it is sent again on
        the next one; it fails with AckTimeout after ``ack_timeout`` unanswered.
        Raises RtClientError at once on a raw WebSocket whose adapter has no acks.
        """
        if not self._acks:
            raise RtClientError(
                "this server's adapter recognises no acks, so call() could never return:"
                " use emit(..., ack=False)"
            )
        self._check_emit(event, data)
        future = self._waiter(self._session.request(event, data, self._clock(), raw=True))
        self._pump(wake_writer=False)  # _await writes it
        return await self._await(future, timeout)

    def _in_hook(self) -> bool:
        """Whether the caller is this client's ``on_connect`` hooks, running now."""
        mark = in_hook.get()
        return mark is not None and mark is self._runner.link.hook_run
