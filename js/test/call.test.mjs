// Unit tests of server actions (`call`): through an attachment and as a public caller, the
// result, every error code, offline and dropped calls, against a scripted socket.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { LiveStateError, connect } from "../dist/index.js";
import { FakeSocket, latest, open } from "./fake_socket.mjs";

function attachBoard(connection, state = { votes: {} }, version = 4, id = 7) {
  const live = connection.attach("Board", "main");
  latest().reply(latest().last("attach"), { type: "attached", id, spec: "Board", key: "main", state, version });
  return live;
}

// Every error code the server may answer a call with (docs/protocol.md, "call"), and its Python type.
const SERVER_ERRORS = [
  ["unknown_action", "UnknownActionError"],
  ["invalid_value", "InvalidValueError"],
  ["permission_denied", "PermissionDeniedError"],
  ["not_found", "NotFoundError"],
  ["property_not_found", "PropertyNotFoundError"],
  ["state_too_large", "StateTooLargeError"],
  ["backend_unavailable", "BackendUnavailableError"],
  ["rate_limited", null],
  ["bad_frame", null],
  ["not_attached", null],
  ["internal", "ZeroDivisionError"],
  ["error", "LiveStateError"],
];

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});
afterEach(() => mock.timers.reset());

describe("live.call", () => {
  test("sends the action and its arguments through the attachment, and resolves to the result", async () => {
    const connection = open();
    const live = attachBoard(connection);
    const voted = live.call("vote", { card: "c1", weight: 2 });
    const request = latest().last("call");
    assert.deepEqual(request, { type: "call", id: 7, action: "vote", args: { card: "c1", weight: 2 }, ref: request.ref });
    assert.equal("identity" in request, false, "the server takes the identity from identify(), never the page");
    latest().reply(request, { type: "ok", result: { card: "c1", votes: 3 } });
    assert.deepEqual(await voted, { card: "c1", votes: 3 });
  });

  test("sends args {} when given none, and resolves to null for an action that returns nothing", async () => {
    const connection = open();
    const live = attachBoard(connection);
    const cleared = live.call("clear_votes");
    const request = latest().last("call");
    assert.deepEqual(request.args, {});
    latest().reply(request, { type: "ok", result: null });
    assert.equal(await cleared, null);
  });

  test("each call has its own ref: replies out of order reach the right promise", async () => {
    const connection = open();
    const live = attachBoard(connection);
    const first = live.call("vote", { card: "a" });
    const second = live.call("vote", { card: "b" });
    const [a, b] = latest().all("call");
    assert.notEqual(a.ref, b.ref);
    latest().reply(b, { type: "ok", result: "b" });
    latest().reply(a, { type: "ok", result: "a" });
    assert.deepEqual(await Promise.all([first, second]), ["a", "b"]);
  });

  test("the action's changes, sent before its ok, are in the state when the call resolves", async () => {
    const connection = open();
    const live = attachBoard(connection, { votes: { c1: 2 } });
    const voted = live.call("vote", { card: "c1" });
    latest().push({ type: "change", id: 7, kind: "updated", prop: "votes", value: { c1: 3 }, version: 5 });
    latest().reply(latest().last("call"), { type: "ok", result: 3 });
    assert.equal(await voted, 3);
    assert.deepEqual([live.state, live.version], [{ votes: { c1: 3 } }, 5]);
  });

  for (const [code, type] of SERVER_ERRORS) {
    test(`rejects with the server's ${code} error, and the attachment stays`, async () => {
      const connection = open();
      const live = attachBoard(connection);
      const called = live.call("vote", { card: "c1" });
      const message = `The server refused: ${code}.`;
      latest().reply(latest().last("call"), { type: "error", code, error: type, message });
      await assert.rejects(called, (error) => {
        assert.ok(error instanceof LiveStateError);
        assert.deepEqual([error.code, error.type, error.message], [code, type, message]);
        return true;
      });
      assert.equal(live.attached, true);
      assert.equal(live.error, null);
      const again = live.call("vote", { card: "c2" });
      latest().reply(latest().last("call"), { type: "ok", result: 1 });
      assert.equal(await again, 1);
    });
  }

  test("made while offline (or before the attachment is live) rejects at once and is never sent", async () => {
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    const live = connection.attach("Board", "main");
    await assert.rejects(live.call("vote", { card: "c1" }), { code: "offline" });
    latest().welcome();
    await assert.rejects(live.call("vote", { card: "c1" }), { code: "offline" }); // attach not answered yet
    assert.equal(latest().all("call").length, 0);
    latest().reply(latest().last("attach"), { type: "attached", id: 1, state: {}, version: 1 });
    latest().close(1006);
    assert.equal(connection.status, "offline");
    const sentBefore = FakeSocket.all.map((socket) => socket.sent.length);
    await assert.rejects(
      live.call("vote", { card: "c1" }),
      (error) => error.code === "offline" && /call "vote".*not sent/.test(error.message),
    );
    assert.deepEqual(FakeSocket.all.map((socket) => socket.sent.length), sentBefore);
  });

  test("in flight when the socket drops rejects as disconnected", async () => {
    const connection = open();
    const live = attachBoard(connection);
    const called = live.call("vote", { card: "c1" });
    latest().close(1006);
    await assert.rejects(called, (error) => error.code === "disconnected" && /may or may not/.test(error.message));
  });

  test("after the attachment ended rejects with not_attached", async () => {
    const connection = open();
    const live = attachBoard(connection);
    void live.detach(); // its detach frame is never answered here
    const sent = latest().sent.length;
    await assert.rejects(live.call("vote"), { code: "not_attached" });
    assert.equal(latest().sent.length, sent);
  });

  test("goes through the new attachment after a reconnect", async () => {
    const connection = open();
    const live = attachBoard(connection);
    connection.drop();
    mock.timers.tick(5_000);
    latest().welcome();
    latest().reply(latest().last("attach"), { type: "attached", id: 9, state: {}, version: 8 });
    const called = live.call("vote", { card: "c1" });
    assert.equal(latest().last("call").id, 9);
    latest().reply(latest().last("call"), { type: "ok", result: 1 });
    assert.equal(await called, 1);
  });
});

describe("connection.call", () => {
  test("calls by spec and key as a public caller, and resolves to the result", async () => {
    const connection = open();
    const called = connection.call("Board", "other", "vote", { card: "c1" });
    const request = latest().last("call");
    assert.deepEqual(request, { type: "call", spec: "Board", key: "other", action: "vote", args: { card: "c1" }, ref: request.ref });
    assert.equal("id" in request, false);
    latest().reply(request, { type: "ok", result: 4 });
    assert.equal(await called, 4);
    const bare = connection.call("Board", "other", "tally");
    assert.deepEqual(latest().last("call").args, {});
    latest().reply(latest().last("call"), { type: "ok", result: null });
    assert.equal(await bare, null);
  });

  for (const [code, type] of SERVER_ERRORS) {
    test(`rejects with the server's ${code} error`, async () => {
      const connection = open();
      const called = connection.call("Board", "other", "vote", { card: "c1" });
      latest().reply(latest().last("call"), { type: "error", code, error: type, message: "No." });
      await assert.rejects(called, { name: "LiveStateError", code, type, message: "No." });
      assert.equal(connection.status, "live");
    });
  }

  test("made while not connected rejects at once with offline and is never sent", async () => {
    const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5 });
    await assert.rejects(
      connection.call("Board", "main", "vote", { card: "c1" }),
      (error) => error.code === "offline" && /call "vote" on Board "main".*not sent/.test(error.message),
    );
    latest().welcome();
    latest().close(1006);
    await assert.rejects(connection.call("Board", "main", "vote"), { code: "offline" });
    assert.equal(FakeSocket.all.flatMap((socket) => socket.all("call")).length, 0);
  });

  test("in flight when the socket drops rejects as disconnected", async () => {
    const connection = open();
    const called = connection.call("Board", "main", "vote", { card: "c1" });
    connection.drop();
    await assert.rejects(called, { code: "disconnected" });
  });

  test("in flight when the connection closes rejects as closed", async () => {
    const connection = open();
    const called = connection.call("Board", "main", "vote", { card: "c1" });
    connection.close();
    await assert.rejects(called, { code: "closed" });
  });
});
