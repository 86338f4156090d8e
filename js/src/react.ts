/**
 * React bindings for livestate: `LiveStateProvider` holds one connection, and
 * `useLiveState(spec, key)` attaches a component to a live state.
 *
 *     <LiveStateProvider url="/livestate/ws"><Counter /></LiveStateProvider>
 *
 *     function Counter() {
 *       const { state, status, live } = useLiveState("Counter", "main");
 *       return <button onClick={() => live?.increment("count")}>{String(state.count)}</button>;
 *     }
 *
 *     function Card({ id }) {
 *       const { call } = useLiveState("Board", "main");   // a server action: see LiveState.call
 *       return <button onClick={() => call("vote", { card: id })}>Vote</button>;
 *     }
 */

import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";

import {
  connect,
  type Connection,
  type ConnectOptions,
  type LiveState,
  type LiveStateError,
  type Presence,
  type State,
  type Status,
} from "./index.js";
import { AttachmentSlot, type CallAction } from "./attachment_slot.js";

export type { CallAction } from "./attachment_slot.js";

const LiveStateContext = createContext<Connection | null>(null);
const EMPTY: State = Object.freeze({}) as State; // one object, so an unattached snapshot stays equal
const NOBODY: Presence = Object.freeze({}) as Presence;

/** Props of LiveStateProvider: a URL to connect to (closed on unmount), or a connection of yours. */
export interface LiveStateProviderProps {
  url?: string;
  connection?: Connection;
  options?: ConnectOptions;
  children?: ReactNode;
}

/** Give the components below one livestate connection. */
export function LiveStateProvider(props: LiveStateProviderProps): ReturnType<typeof createElement> {
  const [owned] = useState(() => (props.connection ? null : connect(props.url ?? "/livestate/ws", props.options)));
  const connection = props.connection ?? owned!;
  useEffect(() => () => owned?.close(), [owned]);
  return createElement(LiveStateContext.Provider, { value: connection }, props.children);
}

/** The connection given by the nearest LiveStateProvider. */
export function useConnection(): Connection {
  const connection = useContext(LiveStateContext);
  if (!connection) {
    throw new Error("useLiveState needs a <LiveStateProvider url=...> above the component.");
  }
  return connection;
}

/** What useLiveState returns: the state and its version, the connection's status, and the attachment. */
export interface LiveStateView<S extends State> {
  state: S;
  version: number;
  status: Status;
  attached: boolean;
  error: LiveStateError | null;
  /** Who is in the live state: identity -> metas (`live.track(meta)` shows this page in it). */
  presence: Presence;
  /** The attachment, for writes (`live.put`, `live.increment`...); null before the first render's effect. */
  live: LiveState<S> | null;
  /**
   * Call a server action of the spec through this hook's attachment: `call("vote", { card: "c1" })`
   * resolves to the action's JSON result (see `LiveState.call`). One stable function for the
   * component's lifetime (safe in dependency lists). Safe to call before the attachment is made:
   * it waits while the attachment is being made (before the first effect, while attaching), then
   * is sent; otherwise it rejects as `live.call` does (`offline` while offline, never sent;
   * `not_attached` once the attachment ended, was refused, or the component let go of it).
   */
  call: CallAction;
}

/**
 * Attach this component to the live state of `spec` for `key` (detached on unmount or when
 * they change); re-renders on every change and on status changes.
 */
export function useLiveState<S extends State = State>(spec: string, key: string): LiveStateView<S> {
  const connection = useConnection();
  const [live, setLive] = useState<LiveState<S> | null>(null);
  const [slot] = useState(() => new AttachmentSlot());
  useEffect(() => {
    const attached = connection.attach<S>(spec, key);
    slot.set(attached as LiveState, connection);
    setLive(attached);
    return () => {
      slot.clear();
      void attached.detach();
      setLive(null);
    };
  }, [connection, spec, key, slot]);

  const snapshot = useRef<LiveStateView<S> | null>(null);
  const subscribe = useMemo(
    () => (notify: () => void) => {
      const stopChanges = live ? live.subscribe(notify) : () => {};
      const stopStatus = connection.onStatus(notify);
      return () => {
        stopChanges();
        stopStatus();
      };
    },
    [connection, live],
  );
  const read = (): LiveStateView<S> => {
    const next: LiveStateView<S> = {
      state: live ? live.state : (EMPTY as S),
      version: live ? live.version : -1,
      status: connection.status,
      attached: live ? live.attached : false,
      error: live ? live.error : null,
      presence: live ? live.presence : NOBODY,
      live,
      call: slot.call,
    };
    const last = snapshot.current;
    if (
      last &&
      last.state === next.state &&
      last.version === next.version &&
      last.status === next.status &&
      last.attached === next.attached &&
      last.error === next.error &&
      last.presence === next.presence &&
      last.live === next.live
    ) {
      return last; // useSyncExternalStore needs the same object while nothing changed
    }
    snapshot.current = next;
    return next;
  };
  return useSyncExternalStore(subscribe, read, read);
}
