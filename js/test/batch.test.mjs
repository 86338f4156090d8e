// Batched messages (docs/protocol.md, "Batched messages"): the client asks for them, and a
// batch's frames act exactly as the same frames sent one by one.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { LiveStateError, PROTOCOL, connect } from "../dist/index.js";
import { FakeSocket, latest, open } from "./fake_socket.mjs";

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});
afterEach(() => mock.timers.reset());

function attached(connection, id = 7) {
  const changes = [];
  const live = connection.attach("Board", "main", { onChange: (change) => changes.push(change) });
  return { live, changes, reply: { type: "attached", id, spec: "Board", key: "main", state: { count: 0 }, version: 1 } };
}

const change = (version, value, id = 7) => ({ type: "change", id, kind: "updated", prop: "count", value, version });

describe("batched messages", () => {
  test("the client asks for them in the socket's URL, keeping the URL's own query", () => {
    connect("ws://example.test/ws", { WebSocket: FakeSocket });
    assert.equal(latest().url, "ws://example.test/ws?batch=1");
    const connection = connect("ws://example.test/ws?token=t", { WebSocket: FakeSocket });
    assert.equal(latest().url, "ws://example.test/ws?token=t&batch=1");
    assert.equal(connection.url, "ws://example.test/ws?token=t", "the endpoint's URL as given");
  });

  test("a batch's frames apply in order, as the same frames one by one do", async () => {
    const one = open();
    const batched = open();
    const sockets = FakeSocket.all;
    const a = attached(one);
    const b = attached(batched);
    const frames = [change(2, 1), change(3, 2), change(3, 9), change(4, 3)];
    sockets[0].reply(sockets[0].last("attach"), a.reply);
    for (const frame of frames) sockets[0].push(frame);
    // The batched socket gets the attached reply and every change in one message.
    sockets[1].pushBatch([{ ref: sockets[1].last("attach").ref, ...b.reply }, ...frames]);
    await Promise.all([a.live.ready, b.live.ready]);
    assert.deepEqual(b.live.state, { count: 3 });
    assert.deepEqual([b.live.state, b.live.version], [a.live.state, a.live.version]);
    assert.deepEqual(b.changes, a.changes);
    assert.deepEqual(b.changes.map((c) => [c.kind, c.version]), [["reset", 1], ["updated", 2], ["updated", 3], ["updated", 4]]);
  });

  test("replies in a batch settle their requests, in order", async () => {
    const connection = open();
    const { live, reply } = attached(connection);
    latest().reply(latest().last("attach"), reply);
    await live.ready;
    const first = live.put("count", 5);
    const second = live.increment("count");
    const [put, increment] = latest().all("put").concat(latest().all("increment"));
    latest().pushBatch([
      change(2, 5),
      { type: "ok", ref: put.ref, result: null },
      change(3, 6),
      { type: "ok", ref: increment.ref, result: 6 },
    ]);
    assert.equal(await first, null);
    assert.equal(await second, 6);
    assert.deepEqual([live.state, live.version], [{ count: 6 }, 3]);
  });

  test("a batch whose welcome speaks another protocol stops at it", async () => {
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    const errors = [];
    connection.onError((error) => errors.push(error));
    const socket = latest();
    socket.readyState = 1;
    socket.onopen?.({});
    socket.pushBatch([
      { type: "welcome", protocol: PROTOCOL + 1, heartbeat: 20, specs: [] },
      { type: "pong", ref: 1 },
    ]);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof LiveStateError);
    assert.equal(errors[0].code, "unsupported_protocol");
    assert.equal(connection.status, "closed");
  });
});
