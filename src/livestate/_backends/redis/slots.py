"""Redis Cluster's key space: the slot of a key, and who owns each slot.

Pure functions and data, no I/O: `key_slot` (CRC16 of the key's hash tag) and
`SlotMap` (read from CLUSTER SHARDS or CLUSTER SLOTS). `topology.Router` routes
by them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

SLOTS = 16384
"""How many hash slots a cluster has."""


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
