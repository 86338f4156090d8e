"""LIVESTATE_URL's Redis forms: what each names, and a clear error for each bad part, worded
alike in every form."""

from __future__ import annotations

import pytest

from livestate import InvalidValueError, LiveStateError
from livestate._backends.redis.resp import Endpoint
from livestate._backends.redis.slots import crc16, key_slot
from livestate._backends.redis.urls import (
    ClusterSeeds,
    SentinelService,
    parse,
    parse_cluster_url,
    parse_sentinel_url,
)

SETTINGS = {"timeout": 5.0}


def test_cluster_url_names_every_seed_with_one_login() -> None:
    """Each host:port is a seed; the login and the query apply to all of them."""
    seeds, values = parse_cluster_url(
        "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002?timeout=2", SETTINGS
    )
    assert [(s.host, s.port) for s in seeds] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 6379),
        ("::1", 7002),
    ]
    assert {(s.username, s.password, s.db, s.tls) for s in seeds} == {("app", "s@cret", 0, None)}
    assert values == {"timeout": 2.0}


def test_rediss_cluster_url_uses_tls_on_every_seed() -> None:
    """rediss+cluster:// gives every seed a TLS context."""
    seeds, _ = parse_cluster_url("rediss+cluster://h1:1,h2:2?ssl_cert_reqs=none", SETTINGS)
    assert all(seed.tls is not None for seed in seeds)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+cluster://h1:1,h2:2/1", "database '1'"),
        ("redis+cluster://h1:1,,h2:2", "empty seed address"),
        ("redis+cluster://h1:1,h2:x", "port 'x'"),
        ("redis+cluster://h1:70000", "port '70000'"),
        ("redis+cluster://h1:1?color=red", "'color'"),
        ("redis://h1:1", "not a cluster URL"),
    ],
)
def test_bad_cluster_url_says_which_part(url: str, names: str) -> None:
    """Each bad part of a cluster URL raises InvalidValueError naming that part."""
    with pytest.raises(InvalidValueError, match=names) as raised:
        parse_cluster_url(url, SETTINGS)
    assert isinstance(raised.value, LiveStateError)


def test_sentinel_url_separates_sentinel_and_data_logins() -> None:
    """The login in front is the data nodes'; sentinel_* query parameters are the Sentinels'."""
    service, values = parse_sentinel_url(
        "redis+sentinel://app:pw@s1:5000,s2/orders/3?sentinel_password=spw&timeout=1", SETTINGS
    )
    assert service.name == "orders"
    assert [(s.host, s.port) for s in service.sentinels] == [("s1", 5000), ("s2", 26379)]
    assert {(s.username, s.password) for s in service.sentinels} == {(None, "spw")}
    assert (service.primary.username, service.primary.password, service.primary.db) == (
        "app",
        "pw",
        3,
    )
    assert values == {"timeout": 1.0}


def test_rediss_sentinel_url_uses_tls_for_both() -> None:
    """rediss+sentinel:// speaks TLS to the Sentinels and to the data nodes."""
    service, _ = parse_sentinel_url("rediss+sentinel://s1:1/svc?ssl_cert_reqs=none", SETTINGS)
    assert service.primary.tls is not None
    assert all(sentinel.tls is not None for sentinel in service.sentinels)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+sentinel://s1:1", "name the Sentinel service"),
        ("redis+sentinel://s1:1/a/b/c", "name the Sentinel service"),
        ("redis+sentinel://s1:1,/svc", "empty Sentinel address"),
        ("redis+sentinel://s1:port/svc", "port 'port'"),
        ("redis+sentinel://s1:1/svc/x", "database"),
        ("redis+sentinel://s1:1/svc?color=red", "'color'"),
        ("redis://s1:1/0", "not a Sentinel URL"),
    ],
)
def test_bad_sentinel_url_says_which_part(url: str, names: str) -> None:
    """Each bad part of a Sentinel URL raises InvalidValueError naming that part."""
    with pytest.raises(InvalidValueError, match=names):
        parse_sentinel_url(url, SETTINGS)


def test_one_parser_reads_every_form() -> None:
    """parse() tells the three forms apart and names each in the words messages use."""
    server, _ = parse("valkey://h:7000/2", SETTINGS)
    cluster, _ = parse("redis+cluster://h1:1,h2:2", SETTINGS)
    sentinel, _ = parse("redis+sentinel://s1:1,s2:2/orders", SETTINGS)
    assert isinstance(server, Endpoint) and str(server) == "h:7000"
    assert isinstance(cluster, ClusterSeeds) and str(cluster) == "the cluster of h1:1, h2:2"
    assert isinstance(sentinel, SentinelService)
    assert str(sentinel) == "the primary of 'orders' (Sentinels s1:1, s2:2)"


@pytest.mark.parametrize(
    ("url", "role"),
    [
        ("redis://h:x/0", "server"),
        ("redis+cluster://h1:1,h:x", "seed"),
        ("redis+sentinel://s1:1,h:x/svc", "Sentinel"),
    ],
)
def test_every_form_words_a_bad_port_alike(url: str, role: str) -> None:
    """A port that is not 1 to 65535 is refused in the same words whichever form it is in."""
    with pytest.raises(InvalidValueError) as raised:
        parse(url, SETTINGS)
    assert str(raised.value) == (
        f"The {role} address 'h:x' in LIVESTATE_URL {url!r} has the port 'x'; a port is a "
        "number from 1 to 65535."
    )


@pytest.mark.parametrize(
    "url", ["redis://h?color=red", "redis+cluster://h?color=red", "redis+sentinel://h/s?color=red"]
)
def test_every_form_words_an_unknown_parameter_alike(url: str) -> None:
    """An unknown query parameter is refused in the same words in every form."""
    with pytest.raises(InvalidValueError, match="has the parameter 'color', which livestate"):
        parse(url, SETTINGS)


def test_the_nodes_of_a_tls_url_share_one_context() -> None:
    """Every node a TLS URL names (seeds; Sentinels and data nodes) uses one TLS context."""
    seeds, _ = parse_cluster_url("rediss+cluster://h1:1,h2:2?ssl_cert_reqs=none", SETTINGS)
    assert seeds[0].tls is not None and seeds[0].tls is seeds[1].tls
    service, _ = parse_sentinel_url("rediss+sentinel://s1:1,s2:2/svc?ssl_cert_reqs=none", {})
    assert {id(node.tls) for node in (*service.sentinels, service.primary)} == {
        id(service.primary.tls)
    }


def test_hash_tag_decides_the_slot() -> None:
    """Keys with the same non-empty hash tag share a slot; an empty tag does not count."""
    assert key_slot("{room:1}:state") == key_slot("{room:1}:log") == key_slot("room:1")
    assert key_slot("{}x") == crc16(b"{}x") % 16384  # an empty tag: the whole key is hashed
    assert key_slot("a{}{b}") == crc16(b"a{}{b}") % 16384  # only the first "{" counts
    assert key_slot("123456789") == 12739  # the CRC16/XMODEM check value 0x31C3, mod 16384
