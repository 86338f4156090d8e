"""What a schema and a write rule add to a write, beside the same write without them.

    .venv/bin/python benchmarks/schema_cost.py            # memory:// and a Valkey it starts
    .venv/bin/python benchmarks/schema_cost.py --quick    # fewer writes

Two specs with the same state: `Plain` (no schema) and `Typed` (a schema: a card
struct per `card:*` property, a bounded counter, a bounded list of short strings),
and `Ruled` (the schema and an `allow` that reads the state, as an author check does).
Each round writes the same values through one attached client to each spec in turn
(put of a card, increment, append), on memory:// and on Valkey; the table gives the
median time per write over the rounds and each spec's ratio to `Plain` in the same
run. It also times the schema check alone beside pydantic's for the same value
(TypeAdapter.validate_json on the same JSON text), which is why livestate checks
with msgspec (docs/decisions.md). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import timeit
from typing import Annotated, Any

import msgspec

from livestate import Caller, LiveState, Node, Write
from livestate.testing import ServerProcess


class Card(msgspec.Struct, forbid_unknown_fields=True):
    """A board card."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=280)]
    column: str
    by: str


SCHEMA = {
    "card:*": Card,
    "votes": Annotated[int, msgspec.Meta(ge=0)],
    "log": Annotated[
        list[Annotated[str, msgspec.Meta(max_length=40)]], msgspec.Meta(max_length=50)
    ],
}


class Plain(LiveState):
    ttl = None


class Typed(LiveState):
    ttl = None
    schema = SCHEMA


class Ruled(LiveState):
    ttl = None
    schema = SCHEMA

    def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str:
        if caller is None or write.prop is None or not write.prop.startswith("card:"):
            return True
        current = write.state.get(write.prop)
        return current is None or current["by"] == caller.identity


CARD = {"text": "Ship the release notes before Friday", "column": "doing", "by": "ann"}


async def per_write(node: Node, spec: type[LiveState], writes: int) -> float:
    """Microseconds per write: puts, increments and appends in turn, through one client."""
    client = await node.attach(spec, "bench", caller=Caller("group", "ann"))
    start = time.perf_counter()
    for n in range(writes // 3):
        await client.put(f"card:{n % 20}", CARD)
        await client.increment("votes")
        await client.append("log", f"event {n}", max_len=50)
    elapsed = time.perf_counter() - start
    await client.detach()
    return elapsed / (writes // 3 * 3) * 1e6


async def measure(url: str, writes: int, rounds: int) -> dict[str, float]:
    """Median µs per write for each spec over `rounds` interleaved rounds."""
    times: dict[str, list[float]] = {spec.__name__: [] for spec in (Plain, Typed, Ruled)}
    async with Node(url, metrics=False) as node:
        for spec in (Plain, Typed, Ruled):  # warm up: start each live state, fill caches
            await per_write(node, spec, 300)
        for turn in range(rounds):
            order = (Plain, Typed, Ruled) if turn % 2 == 0 else (Ruled, Typed, Plain)
            for spec in order:
                times[spec.__name__].append(await per_write(node, spec, writes))
    return {name: statistics.median(values) for name, values in times.items()}


def check_alone() -> dict[str, float]:
    """µs to check one card's JSON: livestate's msgspec decoder beside pydantic's."""
    import pydantic

    text = json.dumps(CARD, separators=(",", ":"))
    decoder = msgspec.json.Decoder(Card)

    class PydanticCard(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", strict=True)
        text: Annotated[str, pydantic.Field(min_length=1, max_length=280)]
        column: str
        by: str

    adapter = pydantic.TypeAdapter(PydanticCard)
    number = 100_000
    msgspec_us = min(timeit.repeat(lambda: decoder.decode(text), number=number, repeat=5))
    pydantic_us = min(timeit.repeat(lambda: adapter.validate_json(text), number=number, repeat=5))
    return {"msgspec": msgspec_us / number * 1e6, "pydantic": pydantic_us / number * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer writes and rounds")
    options = parser.parse_args()
    writes, rounds = (3_000, 3) if options.quick else (12_000, 7)
    results: dict[str, Any] = {"check_us": check_alone()}
    results["memory"] = asyncio.run(measure("memory://", writes, rounds))
    with ServerProcess() as server:
        results["redis"] = asyncio.run(measure(server.url, writes // 4, rounds))
    print(f"{'backend':8} {'spec':6} {'µs/write':>9} {'ratio to Plain':>15}")
    for backend in ("memory", "redis"):
        base = results[backend]["Plain"]
        for spec, value in results[backend].items():
            print(f"{backend:8} {spec:6} {value:9.2f} {value / base:15.3f}")
    check = results["check_us"]
    print(
        f"one card's check alone: msgspec {check['msgspec']:.2f} µs, pydantic "
        f"{check['pydantic']:.2f} µs ({check['pydantic'] / check['msgspec']:.1f}x)"
    )
    print(json.dumps(results), file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
