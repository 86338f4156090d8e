// What the unit tests share: a scripted WebSocket whose server side the test plays, and a
// connection opened over it. Not a test file itself (node --test runs it and finds none).
import assert from "node:assert/strict";

import { PROTOCOL, connect } from "../dist/index.js";

export class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closed = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    assert.equal(this.readyState, 1, "sent on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closed = { code, reason };
    this.onclose?.({ code, reason });
  }
  // The server's side.
  welcome(extra = {}) {
    this.readyState = 1;
    this.onopen?.({});
    this.push({ type: "welcome", protocol: PROTOCOL, heartbeat: 20, specs: ["Board", "Room"], ...extra });
  }
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** Several frames in one message, as a server sends them to a client that asked (?batch=1). */
  pushBatch(frames) {
    this.onmessage?.({ data: JSON.stringify(frames) });
  }
  all(type) {
    return this.sent.filter((frame) => frame.type === type);
  }
  last(type) {
    return this.all(type).at(-1);
  }
  reply(request, frame) {
    this.push({ ref: request.ref, ...frame });
  }
}

/** The socket the client opened last. */
export const latest = () => FakeSocket.all.at(-1);

/** A connection over a FakeSocket, welcomed by the server. */
export function open(options = {}) {
  const connection = connect("ws://example.test/ws", { WebSocket: FakeSocket, random: () => 0.5, ...options });
  latest().welcome();
  return connection;
}
