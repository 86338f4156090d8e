"""Fan-out to PyView live views: from one write until every view has sent its diff.

N views are PyView `ConnectedLiveViewSocket`s in this process (PyView's own
socket class, render path and diff, with a WebSocket stand-in that records the
time each diff is handed to it), all attached to one chat room. One write
(an append to the room's messages) is timed until every view has sent its diff;
the median and p95 over the rounds are reported, for N = 10, 100, 1,000, on
one node (memory://) and then on two nodes over Redis (half the views on each,
the write made on the first; skipped with a message if the Redis backend is
not importable). Its floor, in the same run: PyView alone, the same views
handed the same list by `send_info` one after another, with no livestate. Beside
the two-node rows, one bare Redis round trip (PING) after the same pause: the
least that any write over Redis adds; the two-node rows are also given over the
floor plus it.

Run: python benchmarks/pyview_fanout.py [--rounds 20] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from pyview import LiveView  # type: ignore[import-untyped]
from pyview.events import InfoEvent  # type: ignore[import-untyped]
from pyview.instrumentation import NoOpInstrumentation  # type: ignore[import-untyped]
from pyview.live_socket import ConnectedLiveViewSocket  # type: ignore[import-untyped]
from pyview.meta import PyViewMeta  # type: ignore[import-untyped]
from pyview.template import LiveRender, LiveTemplate, Template  # type: ignore[import-untyped]

import livestate
from livestate import LiveState, Node
from livestate.pyview import live_state

TEMPLATE = LiveTemplate(
    Template(
        "<h1>#{{ room }}</h1><ol>{% for m in live_assigns.messages %}"
        "<li><b>{{ m.nick }}</b> {{ m.text }}</li>{% endfor %}</ol>",
        template_id="bench",
    )
)


class Room(LiveState):
    """The benchmark's chat room."""

    ttl = 5.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"messages": []}


class RoomView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """A chat room view rendering the last messages."""

    async def render(self, assigns: Any, meta: PyViewMeta) -> LiveRender:
        return LiveRender(TEMPLATE, assigns, meta)


class FloorView(LiveView[dict[str, Any]]):  # type: ignore[misc]
    """The same view without livestate: its messages come in an InfoEvent."""

    async def handle_info(self, event: InfoEvent, socket: Any) -> None:
        socket.context["live_assigns"] = {"messages": event.payload}

    async def render(self, assigns: Any, meta: PyViewMeta) -> LiveRender:
        return LiveRender(TEMPLATE, assigns, meta)


class Stopwatch:
    """Counts diffs sent by all views, and notes when the expected number has arrived."""

    def __init__(self) -> None:
        self.expected = 0
        self.count = 0
        self.done = asyncio.Event()
        self.last = 0.0

    def arm(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.done.clear()

    def record(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.last = time.perf_counter()
            self.done.set()


class TimingWebSocket:
    """Stands in for the browser's end of the WebSocket: notes each diff PyView sends."""

    def __init__(self, stopwatch: Stopwatch) -> None:
        self.stopwatch = stopwatch

    async def send_text(self, text: str) -> None:
        if '"diff"' in text[:80]:
            self.stopwatch.record()


@dataclass
class Result:
    """One row of the table."""

    setup: str
    views: int
    median_ms: float
    p95_ms: float
    max_ms: float


async def open_views(node: Node, count: int, stopwatch: Stopwatch, room: str) -> list[Any]:
    """Mount `count` views on `node`, attached to `room`, as PyView's join would."""
    sockets = []
    with livestate.use(node):
        for number in range(count):
            view = RoomView()
            socket = ConnectedLiveViewSocket(
                TimingWebSocket(stopwatch),
                f"lv:phx-bench-{id(node)}-{number}",
                view,
                AsyncIOScheduler(),
                NoOpInstrumentation(),
            )
            socket.context = {"room": room}
            await live_state(socket, Room, room)
            socket.prev_rendered = await socket.render_with_components()
            sockets.append(socket)
    return sockets


async def measure(setup: str, nodes: list[Node], views: int, rounds: int) -> Result:
    """Time `rounds` writes on nodes[0], each until all `views` views have sent their diff."""
    stopwatch = Stopwatch()
    room = f"bench-{setup}-{views}"
    sockets: list[Any] = []
    for index, node in enumerate(nodes):
        share = views // len(nodes) + (1 if index < views % len(nodes) else 0)
        sockets += await open_views(node, share, stopwatch, room)
    await asyncio.sleep(0.2)  # let subscriptions settle
    timings = []
    for number in range(rounds + 2):
        stopwatch.arm(views)
        start = time.perf_counter()
        message = {"nick": "bench", "text": f"message {number}"}
        await nodes[0].append(Room, room, "messages", message, max_len=20)
        await asyncio.wait_for(stopwatch.done.wait(), 60)
        if number >= 2:  # the first two rounds warm caches up
            timings.append((stopwatch.last - start) * 1000)
        await asyncio.sleep(0.05)  # let stray renders finish before the next round
    for socket in sockets:
        await socket.close()
    return summary(setup, views, timings)


async def measure_floor(views: int, rounds: int) -> Result:
    """PyView alone: each round hands every view the new list with `send_info`, in turn,
    until every view has sent its diff."""
    stopwatch = Stopwatch()
    sockets = []
    for number in range(views):
        socket = ConnectedLiveViewSocket(
            TimingWebSocket(stopwatch),
            f"lv:phx-floor-{number}",
            FloorView(),
            AsyncIOScheduler(),
            NoOpInstrumentation(),
        )
        socket.context = {"room": "floor", "live_assigns": {"messages": []}}
        socket.prev_rendered = await socket.render_with_components()
        sockets.append(socket)
    messages: list[dict[str, str]] = []
    timings = []
    for number in range(rounds + 2):
        stopwatch.arm(views)
        start = time.perf_counter()
        messages = [*messages, {"nick": "bench", "text": f"message {number}"}][-20:]
        for socket in sockets:
            await socket.send_info(InfoEvent("messages", messages))
        await asyncio.wait_for(stopwatch.done.wait(), 60)
        if number >= 2:
            timings.append((stopwatch.last - start) * 1000)
        await asyncio.sleep(0.05)  # the same pause between rounds as `measure` makes
    for socket in sockets:
        await socket.close()
    return summary("PyView alone", views, timings)


def summary(setup: str, views: int, timings: list[float]) -> Result:
    """The median, p95 and max of `timings` (ms)."""
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    return Result(setup, views, statistics.median(timings), p95, timings[-1])


async def measure_round_trip(url: str, rounds: int) -> Result:
    """One bare Redis round trip (redis-py, PING) after the same 50 ms pause as each write:
    what any write over Redis adds to the floor at least, on this machine that day (timed
    after the pause, as the writes are, since a pause can make it slower)."""
    import redis.asyncio

    connection = redis.asyncio.Redis.from_url(url)
    timings = []
    for number in range(rounds + 2):
        start = time.perf_counter()
        await connection.ping()
        if number >= 2:
            timings.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.05)
    await connection.aclose()
    return summary("Redis round trip", 0, timings)


async def run(sizes: list[int], rounds: int) -> list[Result]:
    """The floor, the one-node half, then the two-node half if the Redis backend is there
    (with one bare round trip to its server, measured beside it)."""
    results = []
    for views in sizes:
        results.append(await measure_floor(views, rounds))
        print_row(results[-1])
    async with Node("memory://") as node:
        for views in sizes:
            results.append(await measure("1 node, memory", [node], views, rounds))
            print_row(results[-1])
    try:
        import livestate._backends.redis  # noqa: F401
        from livestate.testing import ServerProcess
    except ImportError as error:
        print(f"\nSkipping two nodes over Redis: the Redis backend is not importable ({error}).")
        return results
    with ServerProcess() as server:
        async with Node(server.url) as first, Node(server.url) as second:
            for views in sizes:
                results.append(await measure("2 nodes, Redis", [first, second], views, rounds))
                print_row(results[-1])
        results.append(await measure_round_trip(server.url, rounds))
        print_row(results[-1])
    return results


def print_row(result: Result) -> None:
    """Print one table row as soon as it is measured."""
    print(
        f"{result.setup:<16} {result.views:>6} {result.median_ms:>11.2f} "
        f"{result.p95_ms:>9.2f} {result.max_ms:>9.2f}",
        flush=True,
    )


def main() -> None:
    """Parse the arguments, run, print the table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed writes per row")
    parser.add_argument("--sizes", default="10,100,1000", help="numbers of views, by commas")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"Python {sys.version.split()[0]}, {args.rounds} writes per row; times in ms")
    print(f"{'setup':<16} {'views':>6} {'median':>11} {'p95':>9} {'max':>9}")
    results = asyncio.run(run(sizes, args.rounds))
    floor = {r.views: r.median_ms for r in results if r.setup == "PyView alone"}
    trip = next((r.median_ms for r in results if r.setup == "Redis round trip"), None)
    rows = [r for r in results if r.setup not in ("PyView alone", "Redis round trip")]
    print("\nmedian / the floor's (PyView alone), same run:")
    for result in rows:
        ratio = result.median_ms / floor[result.views]
        print(f"{result.setup:<16} {result.views:>6} {ratio:>10.2f}x")
    if trip is not None:
        print("\ntwo nodes, median / (the floor's + one bare Redis round trip), same run:")
        for result in rows:
            if result.setup == "2 nodes, Redis":
                ratio = result.median_ms / (floor[result.views] + trip)
                print(f"{result.setup:<16} {result.views:>6} {ratio:>10.2f}x")
    print(
        json.dumps(
            {
                "benchmark": "pyview_fanout",
                "clients": "PyView ConnectedLiveViewSocket in process",
                "rounds": args.rounds,
                "results": [result.__dict__ for result in results],
                "ratio_to_floor": {
                    f"{r.setup}, {r.views}": round(r.median_ms / floor[r.views], 2) for r in rows
                },
                "round_trip_ms": trip,
                "ratio_to_floor_and_round_trip": {
                    f"{r.setup}, {r.views}": round(r.median_ms / (floor[r.views] + trip), 2)
                    for r in rows
                    if trip is not None and r.setup == "2 nodes, Redis"
                },
            }
        )
    )


if __name__ == "__main__":
    main()
