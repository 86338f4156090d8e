// Unit tests of the client's own logic (ordering, writes, offline, reconnect, backoff,
// heartbeats) against a scripted socket; the browser tests run it against the real server.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { LiveStateError, connect } from "../dist/index.js";
import { FakeSocket, latest, open } from "./fake_socket.mjs";

function attachLive(connection, state = { count: 0 }, version = 1, id = 7) {
  const changes = [];
  const live = connection.attach("Board", "main", { onChange: (change) => changes.push(change) });
  latest().reply(latest().last("attach"), { type: "attached", id, spec: "Board", key: "main", state, version });
  return { live, changes };
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});
afterEach(() => mock.timers.reset());

describe("attach", () => {
  test("starts from the whole state, then applies changes in version order", async () => {
    const connection = open();
    const { live, changes } = attachLive(connection);
    await live.ready;
    assert.deepEqual(latest().last("attach"), { type: "attach", spec: "Board", key: "main", ref: 1 });
    assert.deepEqual([live.state, live.version, live.attached], [{ count: 0 }, 1, true]);
    const before = live.state;
    latest().push({ type: "change", id: 7, kind: "updated", prop: "count", value: 1, version: 2 });
    latest().push({ type: "change", id: 7, kind: "new", prop: "title", value: "t", version: 3 });
    latest().push({ type: "change", id: 7, kind: "deleted", prop: "count", value: null, version: 4 });
    latest().push({ type: "change", id: 7, kind: "updated", prop: "title", value: "old", version: 3 });
    assert.deepEqual(live.state, { title: "t" });
    assert.equal(live.version, 4);
    assert.notEqual(live.state, before, "each change makes a new state object");
    assert.deepEqual(changes.map((c) => c.kind), ["reset", "updated", "new", "deleted"]);
  });

  test("a refusal rejects ready with the server's code and type, and is not retried", async () => {
    const connection = open();
    const live = connection.attach("Secret", "k");
    latest().reply(latest().last("attach"), {
      type: "error", code: "forbidden", error: null, message: "No.",
    });
    await assert.rejects(live.ready, (error) => error instanceof LiveStateError && error.code === "forbidden");
    assert.equal(live.error.message, "No.");
    latest().close(1006);
    mock.timers.tick(10_000);
    latest().welcome();
    assert.equal(latest().last("attach"), undefined);
  });

  test("a persist_failed notice reaches the page and changes nothing", async () => {
    const connection = open();
    const { live, changes } = attachLive(connection);
    await live.ready;
    latest().push({ type: "change", id: 7, kind: "persist_failed", prop: null, value: { failures: 5 }, version: 1 });
    assert.deepEqual(changes.map((c) => c.kind), ["reset", "persist_failed"]);
    assert.deepEqual(changes[1].value, { failures: 5 });
    assert.deepEqual([live.state, live.version, live.attached], [{ count: 0 }, 1, true]);
  });

  test("a stopped change ends the attachment", async () => {
    const connection = open();
    const { live } = attachLive(connection);
    latest().push({ type: "change", id: 7, kind: "stopped", prop: null, value: null, version: 1 });
    assert.equal(live.attached, false);
    assert.equal(live.error.code, "stopped");
    await assert.rejects(live.put("x", 1), { code: "not_attached" });
  });
});

describe("writes", () => {
  test("resolve with the server's result, or reject with its error", async () => {
    const connection = open();
    const { live } = attachLive(connection);
    const put = live.put("title", "Plans");
    assert.deepEqual(latest().last("put"), { type: "put", id: 7, prop: "title", value: "Plans", ref: 2 });
    latest().reply(latest().last("put"), { type: "ok", result: null });
    assert.equal(await put, null);
    const increment = live.increment("count", 2);
    latest().reply(latest().last("increment"), { type: "ok", result: 2 });
    assert.equal(await increment, 2);
    const append = live.append("cards", "a", { maxLen: 5 });
    assert.equal(latest().last("append").max_len, 5);
    latest().reply(latest().last("append"), {
      type: "error", code: "permission_denied", error: "PermissionDeniedError", message: "Denied.",
    });
    await assert.rejects(append, { name: "LiveStateError", code: "permission_denied", type: "PermissionDeniedError", message: "Denied." });
  });

  test("made while offline reject at once and are never sent", async () => {
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    const live = connection.attach("Board", "main");
    await assert.rejects(live.put("x", 1), { code: "offline" });
    latest().welcome();
    latest().reply(latest().last("attach"), { type: "attached", id: 1, state: {}, version: 1 });
    latest().close(1006);
    const sentBefore = FakeSocket.all.map((socket) => socket.sent.length);
    await assert.rejects(live.increment("x"), (error) => error.code === "offline" && /not sent/.test(error.message));
    assert.deepEqual(FakeSocket.all.map((socket) => socket.sent.length), sentBefore);
  });

  test("in flight when the socket drops reject as disconnected", async () => {
    const connection = open();
    const { live } = attachLive(connection);
    const put = live.put("x", 1);
    latest().close(1006);
    await assert.rejects(put, { code: "disconnected" });
    assert.equal(connection.status, "offline");
  });
});

describe("reconnect", () => {
  test("re-attaches after a drop and delivers exactly one reset with the new state", async () => {
    const statuses = [];
    const connection = open();
    connection.onStatus((status) => statuses.push(status));
    const { live, changes } = attachLive(connection);
    latest().close(1006);
    assert.equal(live.attached, false);
    mock.timers.tick(125); // random 0.5 x the first bound of 250 ms
    assert.equal(FakeSocket.all.length, 2);
    latest().welcome();
    latest().reply(latest().last("attach"), { type: "attached", id: 3, state: { count: 9 }, version: 12 });
    assert.deepEqual([live.state, live.version, live.attached], [{ count: 9 }, 12, true]);
    assert.deepEqual(changes.map((c) => [c.kind, c.version]), [["reset", 1], ["reset", 12]]);
    latest().push({ type: "change", id: 3, kind: "updated", prop: "count", value: 10, version: 13 });
    assert.equal(live.state.count, 10);
    assert.deepEqual(statuses, ["offline", "connecting", "live"]);
  });

  test("backs off exponentially with jitter, up to the maximum", () => {
    const draws = [1, 1, 1, 1, 1, 1, 0];
    const connection = connect("ws://example.test/ws", {
      WebSocket: FakeSocket, backoffMs: 100, maxBackoffMs: 1000, random: () => draws.shift() ?? 1,
    });
    const waits = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      const count = FakeSocket.all.length;
      latest().close(1006);
      let waited = 0;
      while (FakeSocket.all.length === count) {
        mock.timers.tick(10);
        waited += 10;
      }
      waits.push(waited);
    }
    assert.deepEqual(waits, [100, 200, 400, 800, 1000, 1000]);
    latest().close(1006);
    mock.timers.tick(0);
    assert.equal(connection.status, "connecting", "a draw of 0 retries at once");
  });

  test("a server that stops answering pings is left, then reconnected", () => {
    open();
    mock.timers.tick(20_000);
    assert.equal(latest().last("ping").type, "ping");
    mock.timers.tick(21_000);
    assert.equal(FakeSocket.all[0].closed.code, 4002);
  });

  test("close ends everything and stops reconnecting", async () => {
    const connection = open();
    const { live } = attachLive(connection);
    connection.close();
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.all.length, 1);
    assert.equal(connection.status, "closed");
    assert.equal(live.error.code, "closed");
    assert.throws(() => connection.attach("Board", "x"), { code: "closed" });
  });

  test("a server of another protocol version is refused", () => {
    const errors = [];
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket });
    connection.onError((error) => errors.push(error.code));
    latest().welcome({ protocol: 99 });
    assert.deepEqual(errors, ["unsupported_protocol"]);
    assert.equal(connection.status, "closed");
  });
});

describe("defaults", () => {
  test("the reconnect delay bound starts at 250 ms and doubles up to 5 s", () => {
    connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.999999 });
    const waits = [];
    for (let attempt = 0; attempt < 7; attempt++) {
      const count = FakeSocket.all.length;
      latest().close(1006);
      let waited = 0;
      while (FakeSocket.all.length === count) {
        mock.timers.tick(50);
        waited += 50;
      }
      waits.push(waited);
    }
    assert.deepEqual(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
  });
});
