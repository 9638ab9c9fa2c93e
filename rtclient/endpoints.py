"""The URLs a Client may connect to: checked once, put in order once, shown without secrets.

A Client takes one URL or a list of them (the nodes of a cluster, or the same service
behind several balancers). :func:`as_urls` checks what it was given; :func:`rotation`
says in which order the URLs are tried; :func:`endpoint_label` is how a URL is shown
(state changes, the CLI, logs): without its query, fragment or user info, which is
where tokens and passwords travel. Pure: no I/O, no clock; the randomness comes from
the generator the caller passes.

The order policy (``url_order``):

- ``"shuffle"`` (the default): the list is shuffled once per client, then tried in
  that order, round after round. A fleet of bots given the same list spreads over the
  nodes instead of all landing on the first, and when one node dies its clients spread
  over the others (a rotation in the given order would send all of them to the next
  node on the list: one node's load onto one node). NATS clients do the same.
- ``"given"``: the order as given (a primary, then fallbacks).

Whichever order, the client stays on a URL that works; see :mod:`rtclient.reconnect`
for when it moves.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Sequence
from typing import Literal

__all__ = ["UrlOrder", "as_urls", "endpoint_label", "rotation"]

UrlOrder = Literal["shuffle", "given"]


def as_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """The URLs of ``url`` (one string, or a list or tuple of them), checked.

    Raises TypeError for anything else and ValueError for an empty list, an empty
    URL or the same URL twice (a node listed twice would get twice the load).
    """
    if isinstance(url, str):
        urls: tuple[str, ...] = (url,)
    elif isinstance(url, Sequence) and all(isinstance(u, str) for u in url):
        urls = tuple(url)
    else:
        raise TypeError("url is a string or a list (or tuple) of strings")
    if not urls:
        raise ValueError("url: the list of URLs is empty")
    if not all(urls):
        raise ValueError("url: an empty URL")
    if len(set(urls)) != len(urls):
        raise ValueError("url: the same URL is listed twice")
    return urls


def rotation(count: int, order: UrlOrder, rng: random.Random) -> tuple[int, ...]:
    """The order in which ``count`` URLs are tried: indexes into the given list."""
    if order not in ("shuffle", "given"):
        raise ValueError(f"url_order is 'shuffle' or 'given', not {order!r}")
    indexes = list(range(count))
    if order == "shuffle":
        rng.shuffle(indexes)
    return tuple(indexes)


def endpoint_label(url: str) -> str:
    """``url`` as it may be shown: scheme, host, port and path only.

    The query (``?token=…``), the fragment and any ``user:password@`` are dropped.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparsable url>"
    if not parts.scheme or not netloc:
        return "<unparsable url>"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
