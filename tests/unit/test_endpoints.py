"""Unit tests for rtclient.endpoints: URL lists, their order, and how a URL is shown."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rtclient import Client
from rtclient.endpoints import as_urls, endpoint_label, rotation


def test_one_url_or_a_list_or_a_tuple() -> None:
    assert as_urls("ws://a/ws") == ("ws://a/ws",)
    assert as_urls(["ws://a/ws", "ws://b/ws"]) == ("ws://a/ws", "ws://b/ws")
    assert as_urls(("ws://a/ws",)) == ("ws://a/ws",)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ([], ValueError),
        (["ws://a/ws", ""], ValueError),
        (["ws://a/ws", "ws://a/ws"], ValueError),
        ([b"ws://a/ws"], TypeError),
        (42, TypeError),
    ],
)
def test_bad_url_lists_are_refused(given: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        as_urls(given)  # type: ignore[arg-type]


def test_every_url_of_a_list_is_checked_against_the_transport() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        Client(["ws://a/ws", "http://b"], transport="websocket")
    with pytest.raises(ValueError, match=r"Socket\.IO url"):
        Client(["http://a", "tcp://b"], transport="socketio")


def test_given_order_is_kept() -> None:
    assert rotation(4, "given", random.Random(1)) == (0, 1, 2, 3)
    with pytest.raises(ValueError):
        rotation(2, "random", random.Random(1))  # type: ignore[arg-type]


def test_shuffled_starts_spread_a_fleet_over_the_nodes() -> None:
    rng = random.Random(7)
    firsts = Counter(rotation(3, "shuffle", rng)[0] for _ in range(3000))
    assert set(firsts) == {0, 1, 2}
    assert min(firsts.values()) > 800  # about a third each
    # ... and a dead node's clients spread over the others: what follows node 0 varies.
    after_0 = Counter()
    for _ in range(3000):
        order = rotation(3, "shuffle", rng)
        after_0[order[(order.index(0) + 1) % 3]] += 1
    assert set(after_0) == {1, 2} and min(after_0.values()) > 1200


def test_the_label_drops_query_fragment_and_user_info() -> None:
    secret = "s3cr3t-token-value"
    url = f"wss://user:{secret}@chat.example.com:8443/ws?token={secret}&x=1#{secret}"
    assert endpoint_label(url) == "wss://chat.example.com:8443/ws"
    assert endpoint_label("http://[::1]:8765") == "http://[::1]:8765"
    assert endpoint_label("not a url") == "<unparsable url>"


def test_a_client_shows_its_endpoint_without_the_token() -> None:
    secret = "s3cr3t-token-value"
    client = Client([f"ws://a:1/ws?token={secret}", f"ws://b:2/ws?token={secret}"])
    assert client.endpoint in ("ws://a:1/ws", "ws://b:2/ws")
    assert secret in client.url  # the URL itself is used as given
    assert secret not in repr(client)
    assert client.stats()["endpoint"] == client.urls.index(client.url)


def test_a_seeded_backoff_gives_a_reproducible_order() -> None:
    from rtclient import Backoff

    urls = [f"ws://n{i}/ws" for i in range(6)]
    orders = {Client(urls, backoff=Backoff(seed=3)).url for _ in range(5)}
    assert len(orders) == 1
