// Unit tests of the client's presence: the attached frame's presence, presence changes,
// resets, track/untrack (coalesced, re-sent after a reconnect), against a scripted socket.
// tests/test_asgi_presence.py runs the same frames against the real server.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { LiveStateError } from "../dist/index.js";
import { FakeSocket, latest, open } from "./fake_socket.mjs";

const flush = () => new Promise((resolve) => setImmediate(resolve));

function attachRoom(connection, presence = { ann: [{ typing: false }] }, version = 3, id = 5) {
  const changes = [];
  const live = connection.attach("Room", "lobby", { onChange: (change) => changes.push(change) });
  latest().reply(latest().last("attach"), {
    type: "attached", id, spec: "Room", key: "lobby", state: { messages: [] }, version, presence,
  });
  return { live, changes };
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});
afterEach(() => mock.timers.reset());

describe("presence", () => {
  test("starts from the attached frame's presence, and hands it with the first reset", async () => {
    const connection = open();
    const { live, changes } = attachRoom(connection);
    await live.ready;
    assert.deepEqual(live.presence, { ann: [{ typing: false }] });
    assert.deepEqual(changes[0].presence, { ann: [{ typing: false }] });
  });

  test("applies joins, meta updates and leaves in version order, as changes", async () => {
    const connection = open();
    const { live, changes } = attachRoom(connection);
    const before = live.presence;
    latest().push({ type: "change", id: 5, kind: "presence", prop: null, value: { bob: [{ typing: false }] }, version: 4 });
    latest().push({ type: "change", id: 5, kind: "presence", prop: null, value: { ann: [{ typing: true }, { typing: false }] }, version: 5 });
    latest().push({ type: "change", id: 5, kind: "presence", prop: null, value: { bob: [] }, version: 6 });
    // One already seen: ignored, as other changes are.
    latest().push({ type: "change", id: 5, kind: "presence", prop: null, value: { zed: [{}] }, version: 5 });
    assert.deepEqual(live.presence, { ann: [{ typing: true }, { typing: false }] });
    assert.equal(live.version, 6);
    assert.notEqual(live.presence, before, "each presence change makes a new object");
    assert.deepEqual(changes.map((c) => [c.kind, c.version]), [["reset", 3], ["presence", 4], ["presence", 5], ["presence", 6]]);
    assert.deepEqual(live.state, { messages: [] }, "presence changes leave the state alone");
  });

  test("an identity keeps its place when its earliest tab leaves, until a reset (docs/protocol.md)", () => {
    const connection = open();
    const { live } = attachRoom(connection, { ann: [{ tab: 1 }, { tab: 2 }], bob: [{ tab: 1 }] });
    latest().push({ type: "change", id: 5, kind: "presence", prop: null, value: { ann: [{ tab: 2 }] }, version: 4 });
    assert.deepEqual(Object.keys(live.presence), ["ann", "bob"]);
    latest().push({
      type: "change", id: 5, kind: "reset", prop: null, value: { messages: [] }, version: 5,
      presence: { bob: [{ tab: 1 }], ann: [{ tab: 2 }] },
    });
    assert.deepEqual(Object.keys(live.presence), ["bob", "ann"]);
  });

  test("a reset replaces the presence with the one it carries", () => {
    const connection = open();
    const { live } = attachRoom(connection);
    latest().push({
      type: "change", id: 5, kind: "reset", prop: null, value: { messages: [] }, version: 9,
      presence: { cy: [{ typing: false }] },
    });
    assert.deepEqual(live.presence, { cy: [{ typing: false }] });
  });

  test("track sends the meta through the attachment, untrack stops", async () => {
    const connection = open();
    const { live } = attachRoom(connection);
    const tracked = live.track({ typing: true });
    const request = latest().last("track");
    assert.deepEqual(request, { type: "track", id: 5, meta: { typing: true }, ref: request.ref });
    assert.equal("identity" in request, false, "the server chooses the identity, not the page");
    latest().reply(request, { type: "ok", result: null });
    await tracked;
    const untracked = live.untrack();
    latest().reply(latest().last("untrack"), { type: "ok", result: null });
    await untracked;
    assert.equal(live.tracked, undefined);
  });

  test("tracks made while one is in flight are coalesced: the latest meta wins", async () => {
    const connection = open();
    const { live } = attachRoom(connection);
    const first = live.track({ n: 1 });
    const second = live.track({ n: 2 });
    const third = live.track({ n: 3 });
    assert.equal(latest().all("track").length, 1, "one in flight at a time");
    latest().reply(latest().last("track"), { type: "ok", result: null });
    await first;
    await flush();
    assert.deepEqual(latest().all("track").map((f) => f.meta), [{ n: 1 }, { n: 3 }]);
    latest().reply(latest().last("track"), { type: "ok", result: null });
    await Promise.all([second, third]);
  });

  test("a refused track rejects with the server's code", async () => {
    const connection = open();
    const { live } = attachRoom(connection);
    const tracked = live.track({});
    latest().reply(latest().last("track"), { type: "error", code: "forbidden", message: "no identity" });
    await assert.rejects(tracked, (error) => error instanceof LiveStateError && error.code === "forbidden");
  });

  test("a track made before the attachment is live is sent once it is", async () => {
    const connection = open();
    const live = connection.attach("Room", "lobby");
    const tracked = live.track({ typing: false });
    assert.equal(latest().all("track").length, 0);
    latest().reply(latest().last("attach"), { type: "attached", id: 2, spec: "Room", key: "lobby", state: {}, version: 1, presence: {} });
    assert.deepEqual(latest().last("track").meta, { typing: false });
    latest().reply(latest().last("track"), { type: "ok", result: null });
    await tracked;
  });

  test("after a reconnect the page is tracked again with its last meta", async () => {
    const connection = open();
    const { live } = attachRoom(connection);
    const tracked = live.track({ typing: true });
    latest().reply(latest().last("track"), { type: "ok", result: null });
    await tracked;
    connection.drop();
    assert.deepEqual(live.presence, { ann: [{ typing: false }] }, "kept while offline");
    mock.timers.tick(5_000);
    latest().welcome();
    latest().reply(latest().last("attach"), {
      type: "attached", id: 8, spec: "Room", key: "lobby", state: {}, version: 12, presence: { bob: [{}] },
    });
    assert.deepEqual(live.presence, { bob: [{}] });
    assert.deepEqual(latest().last("track"), { type: "track", id: 8, meta: { typing: true }, ref: latest().last("track").ref });
  });

  test("detach rejects a waiting track and forgets the meta", async () => {
    const connection = open();
    const live = connection.attach("Room", "lobby");
    const tracked = live.track({});
    await live.detach();
    await assert.rejects(tracked, (error) => error.code === "not_attached");
    assert.equal(live.tracked, undefined);
  });

  test("connection.presence reads any live state's presence as a public caller", async () => {
    const connection = open();
    const read = connection.presence("Room", "other");
    const request = latest().last("presence");
    assert.deepEqual(request, { type: "presence", spec: "Room", key: "other", ref: request.ref });
    latest().reply(request, { type: "ok", result: { ann: [{}] } });
    assert.deepEqual(await read, { ann: [{}] });
  });
});
