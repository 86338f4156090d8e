/**
 * What `useLiveState`'s `call` goes through (react.ts): the hook's current attachment, waited
 * for while it is being made. Kept apart from React so that node's tests drive it directly
 * (test/attachment_slot.test.mjs); not part of the package's exports.
 *
 * A call waits while the attachment is being made: before the hook's effect created it, and
 * while it attaches (the connection `connecting` or `live`, the attachment not yet attached).
 * Otherwise it is exactly `live.call`: sent when attached, rejected at once with `offline` while
 * the connection is offline, `not_attached` once the attachment ended. A waiting call gives up
 * the same way: `offline` when the connection goes offline, `not_attached` when the attachment
 * is refused or stopped, or when the hook lets go of it (unmount, another spec or key); it moves
 * to the hook's next attachment only when that one is for the same spec and key (React's
 * StrictMode mounts effects twice; a new connection from the provider).
 */

import { LiveStateError, type ActionArgs, type Connection, type JSONValue, type LiveState } from "./index.js";

/** A server action call: the action's name and its keyword arguments; resolves to its JSON result. */
export type CallAction = <T = JSONValue>(action: string, args?: ActionArgs) => Promise<T>;

/** The hook's attachment, as its `call` sees it (one per hook, for the component's lifetime). */
export class AttachmentSlot {
  // "new": the hook's effect has not run yet; "set": `live` is its attachment; "cleared": its
  // cleanup let go of `live`, and the next effect (if any, in the same commit) has not run.
  private phase: "new" | "set" | "cleared" = "new";
  private live: LiveState | null = null;
  private connection: Connection | null = null;
  private readonly waiting = new Set<() => void>();

  /** The hook's effect: `live` (attached over `connection`) is now its attachment. */
  set(live: LiveState, connection: Connection): void {
    this.phase = "set";
    this.live = live;
    this.connection = connection;
    this.wake();
  }

  /**
   * The hook's cleanup: it let go of its attachment. Waiting calls decide after this commit's
   * effects ran (a microtask later), so that a remount with the same spec and key keeps them.
   */
  clear(): void {
    this.phase = "cleared";
    queueMicrotask(() => {
      if (this.phase !== "cleared") return;
      this.live = null;
      this.connection = null;
      this.wake();
    });
  }

  /** Call `action` through the current attachment, waiting while it is being made (see above). Stable. */
  readonly call: CallAction = <T = JSONValue>(action: string, args: ActionArgs = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      let bound: LiveState | null = null;
      let unsubscribe = (): void => {};
      let done = false;
      const finish = (sent: () => Promise<T>): void => {
        done = true;
        unsubscribe();
        this.waiting.delete(check);
        sent().then(resolve, reject);
      };
      const check = (): void => {
        if (done) return;
        const live = this.live;
        if (live === null) {
          if (this.phase === "new") return; // the effect has not made the attachment yet
          const gone = bound;
          finish(() =>
            gone
              ? gone.call<T>(action, args)
              : Promise.reject(
                  new LiveStateError("not_attached", `Cannot call ${JSON.stringify(action)}: the component let go of its live state.`),
                ),
          );
          return;
        }
        if (live !== bound) {
          if (bound && (live.spec !== bound.spec || live.key !== bound.key)) {
            const gone = bound; // the hook moved to another live state: not this call's
            finish(() => gone.call<T>(action, args));
            return;
          }
          unsubscribe();
          bound = live;
          const connection = this.connection!;
          const stopChanges = live.subscribe(check);
          const stopStatus = connection.onStatus(check);
          unsubscribe = () => {
            stopChanges();
            stopStatus();
          };
        }
        if (this.phase === "cleared") return; // let go of: wait for this commit's next effect, if any
        const status = this.connection!.status;
        if (live.attached || live.ended || (status !== "connecting" && status !== "live")) {
          finish(() => live.call<T>(action, args));
        }
      };
      this.waiting.add(check);
      check();
    });

  private wake(): void {
    for (const check of [...this.waiting]) check();
  }
}
