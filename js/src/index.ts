/**
 * livestate's client: live states of a livestate server over one WebSocket.
 *
 *     import { connect } from "livestate";
 *     const live = connect("/livestate/ws");
 *     const board = live.attach("Board", "main", { onChange: () => render(board.state) });
 *     await board.append("cards", { text: "hi" });   // resolves when the server applied it
 *
 * Zero dependencies; the protocol is docs/protocol.md of the livestate repository.
 * Reconnects with jittered backoff and re-attaches, delivering one `reset` per
 * live state; writes made while offline reject at once with code "offline".
 *
 * Actions: `await board.call("vote", { card: "c1" })` runs the spec's server action `vote`
 * with the caller's identity as the server knows it; resolves to its JSON result.
 *
 * Presence: `board.presence` is who is attached (identity -> metas), kept current;
 * `await board.track({ typing: true })` shows this page in it (the server chooses the
 * identity), again to change the meta, and `board.untrack()` stops.
 */

/** The protocol version this client speaks. */
export const PROTOCOL = 1;

/** The connection's status: connecting (or reconnecting), live, offline (waiting to retry), closed. */
export type Status = "connecting" | "live" | "offline" | "closed";

/** A JSON value as the server stores it. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/**
 * The arguments of a server action: its Python parameters' names mapped to JSON values
 * (keyword arguments), validated by the server against the action's signature.
 */
export type ActionArgs = Record<string, JSONValue>;

/** A live state's properties. */
export type State = Record<string, unknown>;

/**
 * One change of a live state, in version order. A `reset` carries the whole state as `value`.
 * `persist_failed` is a notice, not a write (the server's saves keep failing; the state is
 * intact): it comes at the current version and changes nothing.
 */
export interface Change {
  kind: "new" | "updated" | "deleted" | "reset" | "stopped" | "presence" | "persist_failed";
  prop: string | null;
  /** For `presence`: each identity the change touched, mapped to its metas now ([] = it left). */
  value: unknown;
  version: number;
  /** On a `reset` (and the first one after attaching): the whole presence, which replaces it. */
  presence?: Presence;
}

/** Who is in a live state: identity -> its metas, one per tracked client (several tabs), in join order. */
export type Presence = Record<string, JSONValue[]>;

/** An error from the server (`code` as in the protocol, `type` the Python error's name) or the client. */
export class LiveStateError extends Error {
  /** The protocol's error code, such as "permission_denied", "rate_limited", "offline". */
  readonly code: string;
  /** The server's error type, such as "PermissionDeniedError", or null. */
  readonly type: string | null;

  constructor(code: string, message: string, type: string | null = null) {
    super(message);
    this.name = "LiveStateError";
    this.code = code;
    this.type = type;
  }
}

/** The part of the WebSocket API this client uses (the browser's, Node 22's, or the `ws` package's). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Options of `connect`. */
export interface ConnectOptions {
  /** The WebSocket class; default the global one. */
  WebSocket?: new (url: string) => SocketLike;
  /** The first reconnect delay's upper bound, in ms (default 250). */
  backoffMs?: number;
  /** The largest reconnect delay, in ms (default 5,000). */
  maxBackoffMs?: number;
  /** A random source in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

/** Options of `attach`. */
export interface AttachOptions {
  /** Called with each change, after `state` and `version` took it. */
  onChange?: (change: Change, live: LiveState) => void;
}

/** Options of `append`. */
export interface AppendOptions {
  /** Drop the oldest items beyond this length. */
  maxLen?: number;
}

interface Pending {
  resolve: (result: unknown) => void;
  reject: (error: LiveStateError) => void;
}

type Frame = Record<string, unknown> & { type: string };

const OPEN = 1;

/**
 * One attachment to a live state. `state` and `version` are current (`state` is a new
 * object after each change, so it can be compared by identity); writes return promises
 * that resolve when the server applied them and reject with a LiveStateError.
 */
export class LiveState<S extends State = State> {
  /** The state spec's name. */
  readonly spec: string;
  /** The live state's key. */
  readonly key: string;
  /** The current state; an empty object until attached. */
  state: S = {} as S;
  /** The current version; -1 until attached. */
  version = -1;
  /** Who is in it: identity -> metas; a new object after each presence change. Empty until attached. */
  presence: Presence = {};
  /** The meta this page tracks with (re-sent after a reconnect), or undefined when not tracked. */
  tracked: JSONValue | undefined = undefined;
  /** Whether the server attached it (false while offline or after an error). */
  attached = false;
  /** Why the attachment ended or was refused, if it did. */
  error: LiveStateError | null = null;
  /** Resolves when first attached; rejects if the server refuses. */
  readonly ready: Promise<void>;

  /** @internal */ id: number | null = null;
  /** @internal */ ended = false;
  private readonly listeners = new Set<(change: Change | null) => void>();
  private readonly onChange: AttachOptions["onChange"];
  private readonly connection: Connection;
  private settle: [() => void, (error: LiveStateError) => void] | null;
  // At most one track request in flight; a newer meta waits here, replacing any older one.
  private trackBusy = false;
  private trackJob: { meta: JSONValue | undefined; waiters: Pending[] } | null = null;

  /** @internal */
  constructor(connection: Connection, spec: string, key: string, options: AttachOptions) {
    this.connection = connection;
    this.spec = spec;
    this.key = key;
    this.onChange = options.onChange;
    let settle: [() => void, (error: LiveStateError) => void] = [() => {}, () => {}];
    this.ready = new Promise<void>((resolve, reject) => {
      settle = [resolve, reject];
    });
    this.ready.catch(() => {}); // a refusal is also in `error`: no unhandled rejection
    this.settle = settle;
  }

  /** Set `prop` to `value`. */
  put(prop: string, value: JSONValue): Promise<void> {
    return this.write("put", { prop, value }) as Promise<void>;
  }

  /** Remove `prop`. */
  delete(prop: string): Promise<void> {
    return this.write("delete", { prop }) as Promise<void>;
  }

  /** Append `item` to the list `prop` atomically (a missing one starts empty). */
  append(prop: string, item: JSONValue, options: AppendOptions = {}): Promise<void> {
    const fields: Record<string, unknown> = { prop, value: item };
    if (options.maxLen !== undefined) fields.max_len = options.maxLen;
    return this.write("append", fields) as Promise<void>;
  }

  /** Add `by` to the number `prop` atomically; resolves to the new number. */
  increment(prop: string, by = 1): Promise<number> {
    return this.write("increment", { prop, by }) as Promise<number>;
  }

  /** Run the spec's on_mount again and replace the whole state. */
  reset(): Promise<void> {
    return this.write("reset", {}) as Promise<void>;
  }

  /**
   * Call the spec's server action `action` (an `@action` method of the Python spec) with `args`
   * as its keyword arguments, through this attachment. It runs on the server as the identity the
   * server gives this connection (the page never sends one), and its writes apply atomically and
   * reach every attachment as ordinary changes, this one's before the promise resolves.
   *
   * Resolves to the action's JSON return value (null if it returns nothing). Rejects with a
   * LiveStateError as writes do: the server's refusal (`unknown_action`, `invalid_value` for
   * arguments that do not fit the signature, `permission_denied`, `rate_limited`, `internal`...),
   * `offline` when the attachment is not live (never sent), `disconnected` when the socket
   * dropped with the call in flight (it may or may not have run), `not_attached` once the
   * attachment ended. A call takes one write token of the socket's rate limit.
   *
   *     const votes = await board.call<number>("vote", { card: "c1" });
   */
  call<T = JSONValue>(action: string, args: ActionArgs = {}): Promise<T> {
    const what = `call ${JSON.stringify(action)} on ${this.spec} ${JSON.stringify(this.key)}`;
    return this.write("call", { action, args }, what, "call") as Promise<T>;
  }

  /**
   * Show this page in the live state's presence with `meta` (any JSON, small), or change its meta.
   * The identity is the server's to choose (its `identify`). Calls made while one is in flight are
   * coalesced: at most one request in flight, and only the latest meta is sent next. Before the
   * attachment is live (attaching, or offline) the meta waits and is sent once it is; after a
   * reconnect the page is tracked again with its last meta. Resolves when the server applied it;
   * rejects with a LiveStateError ("forbidden" if the server gives this connection no identity,
   * "invalid_value" for a meta too large, "not_attached" once the attachment ended).
   */
  track(meta: JSONValue): Promise<void> {
    this.tracked = meta;
    return this.sendTrack(meta);
  }

  /** Stop showing this page in the presence (detach does it too). */
  untrack(): Promise<void> {
    this.tracked = undefined;
    return this.sendTrack(undefined);
  }

  private sendTrack(meta: JSONValue | undefined): Promise<void> {
    if (this.ended) {
      return Promise.reject(
        new LiveStateError("not_attached", `Cannot track in ${this.spec} ${JSON.stringify(this.key)}: this attachment ended; attach again.`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiters = this.trackJob ? this.trackJob.waiters : [];
      waiters.push({ resolve: () => resolve(), reject });
      this.trackJob = { meta, waiters };
      this.pumpTrack();
    });
  }

  /** Send the latest track/untrack if none is in flight and the attachment is live. */
  private pumpTrack(): void {
    const job = this.trackJob;
    if (!job || this.trackBusy || !this.attached || this.connection.status !== "live") return;
    this.trackJob = null;
    this.trackBusy = true;
    const sent = job.meta === undefined ? this.write("untrack", {}) : this.write("track", { meta: job.meta });
    sent.then(
      () => {
        this.trackBusy = false;
        for (const waiter of job.waiters) waiter.resolve(undefined);
        this.pumpTrack();
      },
      (error: LiveStateError) => {
        this.trackBusy = false;
        for (const waiter of job.waiters) waiter.reject(error);
        this.pumpTrack();
      },
    );
  }

  /** Call `listener` after each change (null for a status change); returns an unsubscribe function. */
  subscribe(listener: (change: Change | null) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Let go of the live state; its writes reject afterwards. */
  async detach(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.attached = false;
    const id = this.id;
    this.id = null;
    this.tracked = undefined;
    const job = this.trackJob;
    this.trackJob = null;
    for (const waiter of job?.waiters ?? []) {
      waiter.reject(new LiveStateError("not_attached", "The attachment was detached before it was tracked."));
    }
    this.connection.forget(this);
    if (id !== null && this.connection.status === "live") {
      await this.connection.request({ type: "detach", id }).catch(() => {});
    }
  }

  private write(
    type: string,
    fields: Record<string, unknown>,
    what = `${type} ${"prop" in fields ? JSON.stringify(fields.prop) + " of " : ""}${this.spec} ${JSON.stringify(this.key)}`,
    noun = "write",
  ): Promise<unknown> {
    if (this.ended) {
      return Promise.reject(
        new LiveStateError("not_attached", `Cannot ${what}: this attachment ended; attach again.`),
      );
    }
    if (!this.attached || this.id === null || this.connection.status !== "live") {
      return Promise.reject(
        new LiveStateError(
          "offline",
          `Cannot ${what}: not connected to the server, so the ${noun} was not sent; retry when live.`,
        ),
      );
    }
    return this.connection.request({ type, id: this.id, ...fields });
  }

  /** @internal */
  attachedWith(id: number, state: S, version: number, presence: Presence = {}): void {
    this.id = id;
    this.attached = true;
    this.error = null;
    this.state = state;
    this.version = version;
    this.presence = presence;
    if (this.settle) {
      this.settle[0]();
      this.settle = null;
    }
    // The server's client is new: show this page again with its last meta.
    if (this.tracked !== undefined && !this.trackJob) {
      this.trackJob = { meta: this.tracked, waiters: [] };
    }
    this.pumpTrack();
    this.emit({ kind: "reset", prop: null, value: state, version, presence });
  }

  /** @internal */
  apply(change: Change): void {
    if (change.kind === "persist_failed") {
      this.emit(change); // a notice: it takes no version of its own
      return;
    }
    if (change.kind !== "reset" && change.kind !== "stopped" && change.version <= this.version) {
      return; // seen already
    }
    const next = { ...this.state } as Record<string, unknown>;
    if (change.kind === "new" || change.kind === "updated") {
      next[change.prop as string] = change.value;
      this.state = next as S;
    } else if (change.kind === "deleted") {
      delete next[change.prop as string];
      this.state = next as S;
    } else if (change.kind === "reset") {
      this.state = change.value as S;
      if (change.presence) this.presence = change.presence;
    } else if (change.kind === "presence") {
      const presence = { ...this.presence };
      for (const [identity, metas] of Object.entries(change.value as Presence)) {
        if (metas.length === 0) delete presence[identity];
        else presence[identity] = metas;
      }
      this.presence = presence;
    } else if (change.kind === "stopped") {
      this.end(new LiveStateError("stopped", `${this.spec} ${JSON.stringify(this.key)} was stopped on the server.`));
    }
    this.version = change.version;
    this.emit(change);
  }

  /** @internal */
  end(error: LiveStateError): void {
    this.ended = true;
    this.attached = false;
    this.id = null;
    this.error = error;
    this.presence = {};
    const job = this.trackJob;
    this.trackJob = null;
    for (const waiter of job?.waiters ?? []) waiter.reject(error);
    if (this.settle) {
      this.settle[1](error);
      this.settle = null;
    }
    this.connection.forget(this);
    this.emit(null);
  }

  /** @internal */
  offline(): void {
    this.attached = false;
    this.id = null;
    this.emit(null);
  }

  private emit(change: Change | null): void {
    if (change && this.onChange) {
      try {
        this.onChange(change, this as LiveState);
      } catch (error) {
        console.error("livestate: onChange threw", error);
      }
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        console.error("livestate: a listener threw", error);
      }
    }
  }
}

/**
 * One WebSocket to a livestate endpoint, shared by any number of attachments. It
 * reconnects by itself with jittered exponential backoff and re-attaches everything.
 */
export class Connection {
  /** The endpoint's URL. */
  readonly url: string;
  /** The current status. */
  status: Status = "connecting";
  /** The welcome frame of the current socket (protocol, heartbeat, specs, limits), once live. */
  welcome: Frame | null = null;

  private socket: SocketLike | null = null;
  private readonly Socket: new (url: string) => SocketLike;
  private readonly live = new Set<LiveState>();
  private readonly byId = new Map<number, LiveState>();
  private readonly pending = new Map<number, Pending>();
  private readonly attaching = new Map<number, LiveState>();
  private readonly statusListeners = new Set<(status: Status) => void>();
  private readonly errorListeners = new Set<(error: LiveStateError) => void>();
  private nextRef = 1;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly random: () => number;

  /** Use `connect(url)`. */
  constructor(url: string, options: ConnectOptions = {}) {
    this.url = resolveUrl(url);
    const Socket = options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
    if (!Socket) {
      throw new LiveStateError(
        "no_websocket",
        "This JavaScript runtime has no WebSocket; pass connect(url, { WebSocket }) (e.g. from the ws package).",
      );
    }
    this.Socket = Socket;
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.random = options.random ?? Math.random;
    this.open();
  }

  /** Attach to the live state of `spec` for `key`; changes reach `options.onChange` and subscribers. */
  attach<S extends State = State>(spec: string, key: string, options: AttachOptions = {}): LiveState<S> {
    if (this.status === "closed") {
      throw new LiveStateError("closed", "This livestate connection is closed; call connect(url) again.");
    }
    const live = new LiveState<S>(this, spec, key, options);
    this.live.add(live as LiveState);
    if (this.status === "live") this.sendAttach(live as LiveState);
    return live;
  }

  /** Call `listener` with each new status; returns an unsubscribe function. */
  onStatus(listener: (status: Status) => void): () => void {
    this.statusListeners.add(listener);
    return () => {
      this.statusListeners.delete(listener);
    };
  }

  /** Call `listener` with errors that answer no request (idle, too_slow, frame_too_large...). */
  onError(listener: (error: LiveStateError) => void): () => void {
    this.errorListeners.add(listener);
    return () => {
      this.errorListeners.delete(listener);
    };
  }

  /** One-shot read as a public caller: the whole state, or one property's value. */
  get(spec: string, key: string, prop?: string): Promise<unknown> {
    if (this.status !== "live") {
      return Promise.reject(new LiveStateError("offline", `Cannot read ${spec} ${JSON.stringify(key)}: not connected.`));
    }
    return this.request(prop === undefined ? { type: "get", spec, key } : { type: "get", spec, key, prop });
  }

  /** One-shot read of who is in a live state (identity -> metas), as a public caller. */
  presence(spec: string, key: string): Promise<Presence> {
    if (this.status !== "live") {
      return Promise.reject(new LiveStateError("offline", `Cannot read who is in ${spec} ${JSON.stringify(key)}: not connected.`));
    }
    return this.request({ type: "presence", spec, key }) as Promise<Presence>;
  }

  /**
   * Call the server action `action` of `spec` for `key` as a public caller (no attachment): the
   * ACL's `public` role applies, and the live state must be running (`not_found` otherwise). As
   * `LiveState.call` otherwise: resolves to the action's JSON result; rejects with a
   * LiveStateError (`offline` at once when not connected, never sent).
   */
  call<T = JSONValue>(spec: string, key: string, action: string, args: ActionArgs = {}): Promise<T> {
    if (this.status !== "live") {
      return Promise.reject(
        new LiveStateError(
          "offline",
          `Cannot call ${JSON.stringify(action)} on ${spec} ${JSON.stringify(key)}: not connected to the server, so the call was not sent; retry when live.`,
        ),
      );
    }
    return this.request({ type: "call", spec, key, action, args }) as Promise<T>;
  }

  /** Close the socket for good; attachments end and pending requests reject. */
  close(): void {
    if (this.status === "closed") return;
    this.setStatus("closed");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "closed by the page");
    this.failPending("closed", "The connection was closed before the server answered.");
    for (const live of [...this.live]) live.end(new LiveStateError("closed", "The connection was closed."));
  }

  /** Drop the current socket as a network failure would (the client reconnects); for tests and demos. */
  drop(): void {
    this.socket?.close(4001, "dropped by the page");
  }

  /** @internal */
  request(frame: Record<string, unknown>): Promise<unknown> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) {
      return Promise.reject(new LiveStateError("offline", "Not connected to the server; the request was not sent."));
    }
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** @internal */
  forget(live: LiveState): void {
    this.live.delete(live);
    for (const [id, each] of this.byId) if (each === live) this.byId.delete(id);
  }

  private open(): void {
    this.setStatus("connecting");
    let socket: SocketLike;
    try {
      socket = new this.Socket(withBatch(this.url));
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.onmessage = (event) => {
      if (this.socket === socket) this.receive(String(event.data), socket);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.lost();
    };
    socket.onerror = () => {};
  }

  private receive(text: string, socket: SocketLike): void {
    this.lastHeard = Date.now();
    let message: Frame | Frame[];
    try {
      message = JSON.parse(text) as Frame | Frame[];
    } catch {
      return;
    }
    if (!Array.isArray(message)) {
      this.handle(message);
      return;
    }
    // A batch (we ask for them with ?batch=1): its frames in order, as if each came alone,
    // unless one of them ended this socket.
    for (const frame of message) {
      if (this.socket !== socket) return;
      this.handle(frame);
    }
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case "change": {
        const live = this.byId.get(frame.id as number);
        if (live) {
          if (frame.kind === "stopped") this.byId.delete(frame.id as number);
          live.apply(frame as unknown as Change);
        }
        return;
      }
      case "welcome":
        if (frame.protocol !== PROTOCOL) {
          this.reportError(
            new LiveStateError(
              "unsupported_protocol",
              `The server speaks livestate protocol ${String(frame.protocol)}, this client ${PROTOCOL}; update one of them.`,
            ),
          );
          this.close();
          return;
        }
        this.welcome = frame;
        this.attempt = 0;
        this.setStatus("live");
        this.startHeartbeat(Number(frame.heartbeat) || 25);
        for (const live of this.live) this.sendAttach(live);
        return;
      case "attached": {
        const live = this.attaching.get(frame.ref as number);
        this.attaching.delete(frame.ref as number);
        this.settle(frame.ref, frame);
        if (!live) return;
        if (live.ended || !this.live.has(live)) {
          this.request({ type: "detach", id: frame.id }).catch(() => {});
          return;
        }
        this.byId.set(frame.id as number, live);
        live.attachedWith(
          frame.id as number,
          frame.state as State,
          frame.version as number,
          (frame.presence as Presence | undefined) ?? {},
        );
        return;
      }
      case "ok":
      case "pong":
        this.settle(frame.ref, frame);
        return;
      case "error": {
        const error = new LiveStateError(
          String(frame.code),
          String(frame.message),
          (frame.error as string | undefined) ?? null,
        );
        const live = frame.ref == null ? undefined : this.attaching.get(frame.ref as number);
        if (live) {
          this.attaching.delete(frame.ref as number);
          live.end(error);
        }
        if (frame.ref != null && this.pending.has(frame.ref as number)) {
          const pending = this.pending.get(frame.ref as number)!;
          this.pending.delete(frame.ref as number);
          pending.reject(error);
        } else if (!live) {
          this.reportError(error);
        }
        return;
      }
    }
  }

  private settle(ref: unknown, frame: Frame): void {
    const pending = this.pending.get(ref as number);
    if (!pending) return;
    this.pending.delete(ref as number);
    pending.resolve(frame.type === "ok" ? frame.result : frame);
  }

  private sendAttach(live: LiveState): void {
    const ref = this.nextRef; // request() takes this ref
    this.attaching.set(ref, live);
    this.request({ type: "attach", spec: live.spec, key: live.key }).catch(() => {});
  }

  private lost(): void {
    this.socket = null;
    this.welcome = null;
    this.stopHeartbeat();
    this.attaching.clear();
    this.byId.clear();
    this.failPending(
      "disconnected",
      "The connection dropped before the server answered; the write or call may or may not have been applied.",
    );
    for (const live of this.live) live.offline();
    if (this.status !== "closed") this.retry();
  }

  private retry(): void {
    this.setStatus("offline");
    // Full jitter: a uniform delay up to an exponentially growing bound, so that many
    // pages cut off at once by a server restart do not all come back at the same moment.
    const bound = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.status !== "closed") this.open();
    }, Math.floor(this.random() * bound));
  }

  private startHeartbeat(seconds: number): void {
    this.stopHeartbeat();
    this.lastHeard = Date.now();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 2 * seconds * 1000) {
        this.socket?.close(4002, "the server stopped answering pings");
        return;
      }
      this.request({ type: "ping" }).catch(() => {});
    }, seconds * 1000);
  }

  private stopHeartbeat(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private failPending(code: string, message: string): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const each of pending) each.reject(new LiveStateError(code, message));
  }

  private reportError(error: LiveStateError): void {
    if (this.errorListeners.size === 0) console.warn(`livestate: ${error.code}: ${error.message}`);
    for (const listener of [...this.errorListeners]) listener(error);
  }

  private setStatus(status: Status): void {
    if (this.status === status) return;
    if (this.status === "closed") return;
    this.status = status;
    for (const listener of [...this.statusListeners]) listener(status);
  }
}

/** Open a connection to a livestate endpoint (`ws://`, `wss://`, or a path on this page's host). */
export function connect(url: string, options: ConnectOptions = {}): Connection {
  return new Connection(url, options);
}

/**
 * The socket's URL: the endpoint's, asking for batched messages (docs/protocol.md, "Batched
 * messages"): frames queued together arrive as one JSON array. A server that does not know
 * the parameter ignores it and sends frames one by one, which this client reads too.
 */
function withBatch(url: string): string {
  return `${url}${url.includes("?") ? "&" : "?"}batch=1`;
}

function resolveUrl(url: string): string {
  if (/^wss?:\/\//.test(url)) return url;
  const location = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (!location) {
    throw new LiveStateError("bad_url", `Give a ws:// or wss:// URL here, not ${JSON.stringify(url)}.`);
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return url.startsWith("/") ? `${scheme}//${location.host}${url}` : `${scheme}//${location.host}/${url}`;
}
