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
/** An error from the server (`code` as in the protocol, `type` the Python error's name) or the client. */
export class LiveStateError extends Error {
    constructor(code, message, type = null) {
        super(message);
        this.name = "LiveStateError";
        this.code = code;
        this.type = type;
    }
}
const OPEN = 1;
/**
 * One attachment to a live state. `state` and `version` are current (`state` is a new
 * object after each change, so it can be compared by identity); writes return promises
 * that resolve when the server applied them and reject with a LiveStateError.
 */
export class LiveState {
    /** @internal */
    constructor(connection, spec, key, options) {
        /** The current state; an empty object until attached. */
        this.state = {};
        /** The current version; -1 until attached. */
        this.version = -1;
        /** Who is in it: identity -> metas; a new object after each presence change. Empty until attached. */
        this.presence = {};
        /** The meta this page tracks with (re-sent after a reconnect), or undefined when not tracked. */
        this.tracked = undefined;
        /** Whether the server attached it (false while offline or after an error). */
        this.attached = false;
        /** Why the attachment ended or was refused, if it did. */
        this.error = null;
        /** @internal */ this.id = null;
        /** @internal */ this.ended = false;
        this.listeners = new Set();
        // At most one track request in flight; a newer meta waits here, replacing any older one.
        this.trackBusy = false;
        this.trackJob = null;
        this.connection = connection;
        this.spec = spec;
        this.key = key;
        this.onChange = options.onChange;
        let settle = [() => { }, () => { }];
        this.ready = new Promise((resolve, reject) => {
            settle = [resolve, reject];
        });
        this.ready.catch(() => { }); // a refusal is also in `error`: no unhandled rejection
        this.settle = settle;
    }
    /** Set `prop` to `value`. */
    put(prop, value) {
        return this.write("put", { prop, value });
    }
    /** Remove `prop`. */
    delete(prop) {
        return this.write("delete", { prop });
    }
    /** Append `item` to the list `prop` atomically (a missing one starts empty). */
    append(prop, item, options = {}) {
        const fields = { prop, value: item };
        if (options.maxLen !== undefined)
            fields.max_len = options.maxLen;
        return this.write("append", fields);
    }
    /** Add `by` to the number `prop` atomically; resolves to the new number. */
    increment(prop, by = 1) {
        return this.write("increment", { prop, by });
    }
    /** Run the spec's on_mount again and replace the whole state. */
    reset() {
        return this.write("reset", {});
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
    call(action, args = {}) {
        const what = `call ${JSON.stringify(action)} on ${this.spec} ${JSON.stringify(this.key)}`;
        return this.write("call", { action, args }, what, "call");
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
    track(meta) {
        this.tracked = meta;
        return this.sendTrack(meta);
    }
    /** Stop showing this page in the presence (detach does it too). */
    untrack() {
        this.tracked = undefined;
        return this.sendTrack(undefined);
    }
    sendTrack(meta) {
        if (this.ended) {
            return Promise.reject(new LiveStateError("not_attached", `Cannot track in ${this.spec} ${JSON.stringify(this.key)}: this attachment ended; attach again.`));
        }
        return new Promise((resolve, reject) => {
            const waiters = this.trackJob ? this.trackJob.waiters : [];
            waiters.push({ resolve: () => resolve(), reject });
            this.trackJob = { meta, waiters };
            this.pumpTrack();
        });
    }
    /** Send the latest track/untrack if none is in flight and the attachment is live. */
    pumpTrack() {
        const job = this.trackJob;
        if (!job || this.trackBusy || !this.attached || this.connection.status !== "live")
            return;
        this.trackJob = null;
        this.trackBusy = true;
        const sent = job.meta === undefined ? this.write("untrack", {}) : this.write("track", { meta: job.meta });
        sent.then(() => {
            this.trackBusy = false;
            for (const waiter of job.waiters)
                waiter.resolve(undefined);
            this.pumpTrack();
        }, (error) => {
            this.trackBusy = false;
            for (const waiter of job.waiters)
                waiter.reject(error);
            this.pumpTrack();
        });
    }
    /** Call `listener` after each change (null for a status change); returns an unsubscribe function. */
    subscribe(listener) {
        this.listeners.add(listener);
        return () => {
            this.listeners.delete(listener);
        };
    }
    /** Let go of the live state; its writes reject afterwards. */
    async detach() {
        if (this.ended)
            return;
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
            await this.connection.request({ type: "detach", id }).catch(() => { });
        }
    }
    write(type, fields, what = `${type} ${"prop" in fields ? JSON.stringify(fields.prop) + " of " : ""}${this.spec} ${JSON.stringify(this.key)}`, noun = "write") {
        if (this.ended) {
            return Promise.reject(new LiveStateError("not_attached", `Cannot ${what}: this attachment ended; attach again.`));
        }
        if (!this.attached || this.id === null || this.connection.status !== "live") {
            return Promise.reject(new LiveStateError("offline", `Cannot ${what}: not connected to the server, so the ${noun} was not sent; retry when live.`));
        }
        return this.connection.request({ type, id: this.id, ...fields });
    }
    /** @internal */
    attachedWith(id, state, version, presence = {}) {
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
    apply(change) {
        if (change.kind === "persist_failed") {
            this.emit(change); // a notice: it takes no version of its own
            return;
        }
        if (change.kind !== "reset" && change.kind !== "stopped" && change.version <= this.version) {
            return; // seen already
        }
        const next = { ...this.state };
        if (change.kind === "new" || change.kind === "updated") {
            next[change.prop] = change.value;
            this.state = next;
        }
        else if (change.kind === "deleted") {
            delete next[change.prop];
            this.state = next;
        }
        else if (change.kind === "reset") {
            this.state = change.value;
            if (change.presence)
                this.presence = change.presence;
        }
        else if (change.kind === "presence") {
            const presence = { ...this.presence };
            for (const [identity, metas] of Object.entries(change.value)) {
                if (metas.length === 0)
                    delete presence[identity];
                else
                    presence[identity] = metas;
            }
            this.presence = presence;
        }
        else if (change.kind === "stopped") {
            this.end(new LiveStateError("stopped", `${this.spec} ${JSON.stringify(this.key)} was stopped on the server.`));
        }
        this.version = change.version;
        this.emit(change);
    }
    /** @internal */
    end(error) {
        this.ended = true;
        this.attached = false;
        this.id = null;
        this.error = error;
        this.presence = {};
        const job = this.trackJob;
        this.trackJob = null;
        for (const waiter of job?.waiters ?? [])
            waiter.reject(error);
        if (this.settle) {
            this.settle[1](error);
            this.settle = null;
        }
        this.connection.forget(this);
        this.emit(null);
    }
    /** @internal */
    offline() {
        this.attached = false;
        this.id = null;
        this.emit(null);
    }
    emit(change) {
        if (change && this.onChange) {
            try {
                this.onChange(change, this);
            }
            catch (error) {
                console.error("livestate: onChange threw", error);
            }
        }
        for (const listener of [...this.listeners]) {
            try {
                listener(change);
            }
            catch (error) {
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
    /** Use `connect(url)`. */
    constructor(url, options = {}) {
        /** The current status. */
        this.status = "connecting";
        /** The welcome frame of the current socket (protocol, heartbeat, specs, limits), once live. */
        this.welcome = null;
        this.socket = null;
        this.live = new Set();
        this.byId = new Map();
        this.pending = new Map();
        this.attaching = new Map();
        this.statusListeners = new Set();
        this.errorListeners = new Set();
        this.nextRef = 1;
        this.attempt = 0;
        this.retryTimer = null;
        this.pingTimer = null;
        this.lastHeard = 0;
        this.url = resolveUrl(url);
        const Socket = options.WebSocket ?? globalThis.WebSocket;
        if (!Socket) {
            throw new LiveStateError("no_websocket", "This JavaScript runtime has no WebSocket; pass connect(url, { WebSocket }) (e.g. from the ws package).");
        }
        this.Socket = Socket;
        this.backoffMs = options.backoffMs ?? 250;
        this.maxBackoffMs = options.maxBackoffMs ?? 5000;
        this.random = options.random ?? Math.random;
        this.open();
    }
    /** Attach to the live state of `spec` for `key`; changes reach `options.onChange` and subscribers. */
    attach(spec, key, options = {}) {
        if (this.status === "closed") {
            throw new LiveStateError("closed", "This livestate connection is closed; call connect(url) again.");
        }
        const live = new LiveState(this, spec, key, options);
        this.live.add(live);
        if (this.status === "live")
            this.sendAttach(live);
        return live;
    }
    /** Call `listener` with each new status; returns an unsubscribe function. */
    onStatus(listener) {
        this.statusListeners.add(listener);
        return () => {
            this.statusListeners.delete(listener);
        };
    }
    /** Call `listener` with errors that answer no request (idle, too_slow, frame_too_large...). */
    onError(listener) {
        this.errorListeners.add(listener);
        return () => {
            this.errorListeners.delete(listener);
        };
    }
    /** One-shot read as a public caller: the whole state, or one property's value. */
    get(spec, key, prop) {
        if (this.status !== "live") {
            return Promise.reject(new LiveStateError("offline", `Cannot read ${spec} ${JSON.stringify(key)}: not connected.`));
        }
        return this.request(prop === undefined ? { type: "get", spec, key } : { type: "get", spec, key, prop });
    }
    /** One-shot read of who is in a live state (identity -> metas), as a public caller. */
    presence(spec, key) {
        if (this.status !== "live") {
            return Promise.reject(new LiveStateError("offline", `Cannot read who is in ${spec} ${JSON.stringify(key)}: not connected.`));
        }
        return this.request({ type: "presence", spec, key });
    }
    /**
     * Call the server action `action` of `spec` for `key` as a public caller (no attachment): the
     * ACL's `public` role applies, and the live state must be running (`not_found` otherwise). As
     * `LiveState.call` otherwise: resolves to the action's JSON result; rejects with a
     * LiveStateError (`offline` at once when not connected, never sent).
     */
    call(spec, key, action, args = {}) {
        if (this.status !== "live") {
            return Promise.reject(new LiveStateError("offline", `Cannot call ${JSON.stringify(action)} on ${spec} ${JSON.stringify(key)}: not connected to the server, so the call was not sent; retry when live.`));
        }
        return this.request({ type: "call", spec, key, action, args });
    }
    /** Close the socket for good; attachments end and pending requests reject. */
    close() {
        if (this.status === "closed")
            return;
        this.setStatus("closed");
        if (this.retryTimer)
            clearTimeout(this.retryTimer);
        this.stopHeartbeat();
        const socket = this.socket;
        this.socket = null;
        socket?.close(1000, "closed by the page");
        this.failPending("closed", "The connection was closed before the server answered.");
        for (const live of [...this.live])
            live.end(new LiveStateError("closed", "The connection was closed."));
    }
    /** Drop the current socket as a network failure would (the client reconnects); for tests and demos. */
    drop() {
        this.socket?.close(4001, "dropped by the page");
    }
    /** @internal */
    request(frame) {
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
    forget(live) {
        this.live.delete(live);
        for (const [id, each] of this.byId)
            if (each === live)
                this.byId.delete(id);
    }
    open() {
        this.setStatus("connecting");
        let socket;
        try {
            socket = new this.Socket(withBatch(this.url));
        }
        catch {
            this.retry();
            return;
        }
        this.socket = socket;
        socket.onmessage = (event) => {
            if (this.socket === socket)
                this.receive(String(event.data), socket);
        };
        socket.onclose = () => {
            if (this.socket === socket)
                this.lost();
        };
        socket.onerror = () => { };
    }
    receive(text, socket) {
        this.lastHeard = Date.now();
        let message;
        try {
            message = JSON.parse(text);
        }
        catch {
            return;
        }
        if (!Array.isArray(message)) {
            this.handle(message);
            return;
        }
        // A batch (we ask for them with ?batch=1): its frames in order, as if each came alone,
        // unless one of them ended this socket.
        for (const frame of message) {
            if (this.socket !== socket)
                return;
            this.handle(frame);
        }
    }
    handle(frame) {
        switch (frame.type) {
            case "change": {
                const live = this.byId.get(frame.id);
                if (live) {
                    if (frame.kind === "stopped")
                        this.byId.delete(frame.id);
                    live.apply(frame);
                }
                return;
            }
            case "welcome":
                if (frame.protocol !== PROTOCOL) {
                    this.reportError(new LiveStateError("unsupported_protocol", `The server speaks livestate protocol ${String(frame.protocol)}, this client ${PROTOCOL}; update one of them.`));
                    this.close();
                    return;
                }
                this.welcome = frame;
                this.attempt = 0;
                this.setStatus("live");
                this.startHeartbeat(Number(frame.heartbeat) || 25);
                for (const live of this.live)
                    this.sendAttach(live);
                return;
            case "attached": {
                const live = this.attaching.get(frame.ref);
                this.attaching.delete(frame.ref);
                this.settle(frame.ref, frame);
                if (!live)
                    return;
                if (live.ended || !this.live.has(live)) {
                    this.request({ type: "detach", id: frame.id }).catch(() => { });
                    return;
                }
                this.byId.set(frame.id, live);
                live.attachedWith(frame.id, frame.state, frame.version, frame.presence ?? {});
                return;
            }
            case "ok":
            case "pong":
                this.settle(frame.ref, frame);
                return;
            case "error": {
                const error = new LiveStateError(String(frame.code), String(frame.message), frame.error ?? null);
                const live = frame.ref == null ? undefined : this.attaching.get(frame.ref);
                if (live) {
                    this.attaching.delete(frame.ref);
                    live.end(error);
                }
                if (frame.ref != null && this.pending.has(frame.ref)) {
                    const pending = this.pending.get(frame.ref);
                    this.pending.delete(frame.ref);
                    pending.reject(error);
                }
                else if (!live) {
                    this.reportError(error);
                }
                return;
            }
        }
    }
    settle(ref, frame) {
        const pending = this.pending.get(ref);
        if (!pending)
            return;
        this.pending.delete(ref);
        pending.resolve(frame.type === "ok" ? frame.result : frame);
    }
    sendAttach(live) {
        const ref = this.nextRef; // request() takes this ref
        this.attaching.set(ref, live);
        this.request({ type: "attach", spec: live.spec, key: live.key }).catch(() => { });
    }
    lost() {
        this.socket = null;
        this.welcome = null;
        this.stopHeartbeat();
        this.attaching.clear();
        this.byId.clear();
        this.failPending("disconnected", "The connection dropped before the server answered; the write or call may or may not have been applied.");
        for (const live of this.live)
            live.offline();
        if (this.status !== "closed")
            this.retry();
    }
    retry() {
        this.setStatus("offline");
        // Full jitter: a uniform delay up to an exponentially growing bound, so that many
        // pages cut off at once by a server restart do not all come back at the same moment.
        const bound = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this.attempt);
        this.attempt += 1;
        this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            if (this.status !== "closed")
                this.open();
        }, Math.floor(this.random() * bound));
    }
    startHeartbeat(seconds) {
        this.stopHeartbeat();
        this.lastHeard = Date.now();
        this.pingTimer = setInterval(() => {
            if (Date.now() - this.lastHeard > 2 * seconds * 1000) {
                this.socket?.close(4002, "the server stopped answering pings");
                return;
            }
            this.request({ type: "ping" }).catch(() => { });
        }, seconds * 1000);
    }
    stopHeartbeat() {
        if (this.pingTimer)
            clearInterval(this.pingTimer);
        this.pingTimer = null;
    }
    failPending(code, message) {
        const pending = [...this.pending.values()];
        this.pending.clear();
        for (const each of pending)
            each.reject(new LiveStateError(code, message));
    }
    reportError(error) {
        if (this.errorListeners.size === 0)
            console.warn(`livestate: ${error.code}: ${error.message}`);
        for (const listener of [...this.errorListeners])
            listener(error);
    }
    setStatus(status) {
        if (this.status === status)
            return;
        if (this.status === "closed")
            return;
        this.status = status;
        for (const listener of [...this.statusListeners])
            listener(status);
    }
}
/** Open a connection to a livestate endpoint (`ws://`, `wss://`, or a path on this page's host). */
export function connect(url, options = {}) {
    return new Connection(url, options);
}
/**
 * The socket's URL: the endpoint's, asking for batched messages (docs/protocol.md, "Batched
 * messages"): frames queued together arrive as one JSON array. A server that does not know
 * the parameter ignores it and sends frames one by one, which this client reads too.
 */
function withBatch(url) {
    return `${url}${url.includes("?") ? "&" : "?"}batch=1`;
}
function resolveUrl(url) {
    if (/^wss?:\/\//.test(url))
        return url;
    const location = globalThis.location;
    if (!location) {
        throw new LiveStateError("bad_url", `Give a ws:// or wss:// URL here, not ${JSON.stringify(url)}.`);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return url.startsWith("/") ? `${scheme}//${location.host}${url}` : `${scheme}//${location.host}/${url}`;
}
