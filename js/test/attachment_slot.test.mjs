// Unit tests of useLiveState's `call` (js/src/attachment_slot.ts, which the hook drives from its
// effect: set() when it attached, clear() in its cleanup), without React: the hook's call
// waits while its attachment is being made, and otherwise behaves as live.call.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { connect } from "../dist/index.js";
import { AttachmentSlot } from "../dist/attachment_slot.js";
import { FakeSocket, latest, open } from "./fake_socket.mjs";

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Whether `promise` settled yet, as "pending", "resolved: <value>" or "rejected: <code>". */
async function settled(promise) {
  let outcome = "pending";
  promise.then(
    (value) => (outcome = `resolved: ${JSON.stringify(value)}`),
    (error) => (outcome = `rejected: ${error.code}`),
  );
  await flush();
  return outcome;
}

/** What the hook's effect does: attach, then hand the attachment to the slot. */
function mount(slot, connection, spec = "Board", key = "main") {
  const live = connection.attach(spec, key);
  slot.set(live, connection);
  return live;
}

/** What the hook's cleanup does. */
function unmount(slot, live) {
  slot.clear();
  void live.detach();
}

const answerAttach = (id = 7) =>
  latest().reply(latest().last("attach"), { type: "attached", id, spec: "Board", key: "main", state: {}, version: 1 });

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});
afterEach(() => mock.timers.reset());

describe("useLiveState's call", () => {
  test("is one function for the hook's lifetime", () => {
    const slot = new AttachmentSlot();
    const before = slot.call;
    const live = mount(slot, open());
    unmount(slot, live);
    assert.equal(slot.call, before);
  });

  test("once attached, is live.call: sent at once through the attachment, resolves to the result", async () => {
    const slot = new AttachmentSlot();
    mount(slot, open());
    answerAttach();
    const voted = slot.call("vote", { card: "c1" });
    const request = latest().last("call");
    assert.deepEqual(request, { type: "call", id: 7, action: "vote", args: { card: "c1" }, ref: request.ref });
    latest().reply(request, { type: "ok", result: 3 });
    assert.equal(await voted, 3);
  });

  test("made before the effect ran, waits for the attachment, then is sent", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    const voted = slot.call("vote", { card: "c1" });
    assert.equal(await settled(voted), "pending");
    mount(slot, connection);
    assert.equal(await settled(voted), "pending");
    assert.equal(latest().all("call").length, 0, "not sent before the server attached it");
    answerAttach();
    assert.deepEqual(latest().last("call"), { type: "call", id: 7, action: "vote", args: { card: "c1" }, ref: latest().last("call").ref });
    latest().reply(latest().last("call"), { type: "ok", result: 1 });
    assert.equal(await voted, 1);
  });

  test("made while the first connection is still opening, is sent once attached", async () => {
    const slot = new AttachmentSlot();
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    mount(slot, connection);
    const voted = slot.call("vote", { card: "c1" });
    latest().welcome();
    assert.equal(await settled(voted), "pending");
    answerAttach();
    latest().reply(latest().last("call"), { type: "ok", result: null });
    assert.equal(await voted, null);
  });

  test("rejects with the server's error, as live.call", async () => {
    const slot = new AttachmentSlot();
    mount(slot, open());
    answerAttach();
    const voted = slot.call("vote", { card: "zz" });
    latest().reply(latest().last("call"), { type: "error", code: "invalid_value", error: "InvalidValueError", message: "No card zz." });
    await assert.rejects(voted, { code: "invalid_value", type: "InvalidValueError", message: "No card zz." });
  });

  test("made while offline rejects at once with offline, never sent", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    mount(slot, connection);
    answerAttach();
    connection.drop();
    assert.equal(connection.status, "offline");
    await assert.rejects(slot.call("vote", { card: "c1" }), { code: "offline" });
    assert.equal(FakeSocket.all.flatMap((socket) => socket.all("call")).length, 0);
  });

  test("waiting when the connection goes offline rejects with offline, never sent", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    mount(slot, connection);
    const voted = slot.call("vote", { card: "c1" });
    connection.drop();
    await assert.rejects(voted, { code: "offline" });
    mock.timers.tick(5_000);
    latest().welcome();
    answerAttach(8);
    assert.equal(FakeSocket.all.flatMap((socket) => socket.all("call")).length, 0);
  });

  test("in flight when the socket drops rejects as disconnected", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    mount(slot, connection);
    answerAttach();
    const voted = slot.call("vote", { card: "c1" });
    connection.drop();
    await assert.rejects(voted, { code: "disconnected" });
  });

  test("waiting when the server refuses the attachment rejects with not_attached", async () => {
    const slot = new AttachmentSlot();
    const live = mount(slot, open());
    const voted = slot.call("vote", { card: "c1" });
    latest().reply(latest().last("attach"), { type: "error", code: "forbidden", message: "No." });
    await assert.rejects(voted, { code: "not_attached" });
    assert.equal(live.error.code, "forbidden");
  });

  test("waiting when the component unmounts rejects with not_attached, never sent", async () => {
    const slot = new AttachmentSlot();
    const live = mount(slot, open());
    const voted = slot.call("vote", { card: "c1" });
    unmount(slot, live);
    await assert.rejects(voted, { code: "not_attached" });
    assert.equal(latest().all("call").length, 0);
    await assert.rejects(slot.call("vote"), { code: "not_attached" }, "and so does a call after the unmount");
  });

  test("waiting across a StrictMode remount (same spec and key) is sent through the new attachment", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    const first = mount(slot, connection);
    const voted = slot.call("vote", { card: "c1" });
    unmount(slot, first);
    mount(slot, connection); // the same commit: effects run again at once
    assert.equal(await settled(voted), "pending");
    const attaches = latest().all("attach");
    latest().reply(attaches.at(-1), { type: "attached", id: 12, spec: "Board", key: "main", state: {}, version: 1 });
    assert.equal(latest().last("call").id, 12);
    latest().reply(latest().last("call"), { type: "ok", result: 2 });
    assert.equal(await voted, 2);
  });

  test("waiting across a remount keeps waiting when the connection's status changes in between", async () => {
    const slot = new AttachmentSlot();
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    const first = mount(slot, connection);
    const voted = slot.call("vote", { card: "c1" });
    unmount(slot, first);
    latest().welcome(); // the connection goes live before the next effect runs
    mount(slot, connection);
    answerAttach(4);
    assert.equal(latest().last("call").id, 4);
    latest().reply(latest().last("call"), { type: "ok", result: 5 });
    assert.equal(await voted, 5);
  });

  test("waiting when the hook moves to another key rejects with not_attached, and is not sent there", async () => {
    const slot = new AttachmentSlot();
    const connection = open();
    const first = mount(slot, connection, "Board", "a");
    const voted = slot.call("vote", { card: "c1" });
    unmount(slot, first);
    mount(slot, connection, "Board", "b");
    await assert.rejects(voted, { code: "not_attached" });
    latest().reply(latest().last("attach"), { type: "attached", id: 3, spec: "Board", key: "b", state: {}, version: 1 });
    assert.equal(latest().all("call").length, 0);
  });
});
