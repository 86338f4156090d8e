"""Redis Cluster's key space: the slot of a key, who owns each slot, and cluster URLs.

Pure functions and data, no I/O: `key_slot` (CRC16 of the key's hash tag),
`SlotMap` (read from CLUSTER SHARDS or CLUSTER SLOTS) and `parse_cluster_url`.
`topology.Router` routes by them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..._exceptions import InvalidValueError
from .resp import Endpoint, parse_url

SLOTS = 16384
"""How many hash slots a cluster has."""

_SCHEMES = {
    "redis+cluster": "redis",
    "valkey+cluster": "redis",
    "rediss+cluster": "rediss",
    "valkeys+cluster": "rediss",
}


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


@functools.lru_cache(maxsize=65536)
def key_slot(key: str | bytes) -> int:
    """The cluster slot of `key`: of its hash tag (the text in the first `{…}`) if any."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def parse_cluster_url(
    url: str, settings: Mapping[str, float]
) -> tuple[list[Endpoint], dict[str, float]]:
    """The seed endpoints a `redis+cluster://` URL names, and livestate's `settings` in it.

    The form is `redis+cluster://[[user]:password@]host[:port][,host[:port]…][?query]`
    (`rediss+cluster://` for TLS; the valkey spellings too), with the query
    parameters of a redis:// URL. A cluster has only database 0. Raises
    InvalidValueError, naming the part, for anything else.
    """
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise InvalidValueError(
            f"LIVESTATE_URL {url!r} is not a cluster URL: use redis+cluster://host:port,… "
            "or rediss+cluster:// for TLS."
        )
    login, _, hosts = parts.netloc.rpartition("@")
    path = parts.path.strip("/")
    if path not in ("", "0"):
        raise InvalidValueError(
            f"LIVESTATE_URL {url!r} names database {path!r}, but a cluster has only database 0: "
            "leave the path out."
        )
    query = f"?{parts.query}" if parts.query else ""
    seeds: list[Endpoint] = []
    values: dict[str, float] = dict(settings)
    for host in (h.strip() for h in hosts.split(",")):
        if not host:
            raise InvalidValueError(
                f"LIVESTATE_URL {url!r} has an empty seed address: list host:port pairs "
                "separated by commas."
            )
        _check_port(url, host)
        seed_url = f"{scheme}://{login + '@' if login else ''}{host}{query}"
        endpoint, values = parse_url(seed_url, settings)
        seeds.append(endpoint)
    return seeds, values


def _check_port(url: str, host: str) -> None:
    port = host.rpartition("]")[2] if host.startswith("[") else host
    if ":" in port:
        text = port.rpartition(":")[2]
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise InvalidValueError(
                f"The seed address {host!r} in LIVESTATE_URL {url!r} has the port {text!r}; "
                "a port is a number from 1 to 65535."
            )


@dataclasses.dataclass(frozen=True)
class SlotMap:
    """Who owns which slot: the primary's address per slot (None while no primary does),
    and every node address the cluster named (primaries and replicas)."""

    owners: tuple[str | None, ...]
    nodes: frozenset[str]

    @classmethod
    def from_shards(cls, reply: Sequence[Any], tls: bool) -> SlotMap:
        """Read a CLUSTER SHARDS reply (RESP2: flat name/value lists)."""
        owners: list[str | None] = [None] * SLOTS
        nodes: set[str] = set()
        for shard in reply:
            fields = _pairs(shard)
            primary = None
            for node in fields["nodes"]:
                info = _pairs(node)
                port = info.get("tls-port") if tls else info.get("port")
                if port is None:
                    port = info.get("port")
                host = info.get("endpoint")
                if not host or host == "?":
                    host = info.get("ip")
                address = f"{host}:{port}"
                if info.get("health") == "online":
                    nodes.add(address)
                    if info.get("role") == "master":
                        primary = address
            ranges = fields["slots"]
            for index in range(0, len(ranges), 2):
                for slot in range(int(ranges[index]), int(ranges[index + 1]) + 1):
                    owners[slot] = primary
        return cls(tuple(owners), frozenset(nodes))

    @classmethod
    def from_slots(cls, reply: Sequence[Any]) -> SlotMap:
        """Read a CLUSTER SLOTS reply (before Redis 7)."""
        owners: list[str | None] = [None] * SLOTS
        nodes: set[str] = set()
        for start, end, primary, *replicas in reply:
            address = f"{primary[0]}:{primary[1]}"
            nodes.add(address)
            nodes.update(f"{r[0]}:{r[1]}" for r in replicas)
            for slot in range(int(start), int(end) + 1):
                owners[slot] = address
        return cls(tuple(owners), frozenset(nodes))

    @property
    def primaries(self) -> set[str]:
        """The addresses that own at least one slot."""
        return {owner for owner in self.owners if owner is not None}


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
