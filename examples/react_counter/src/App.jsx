import { useState } from "react";
import { useLiveState } from "livestate/react";

const LABELS = { connecting: "Connecting…", live: "Live", offline: "Offline, retrying…", closed: "Closed" };

export function App() {
  const counter = new URLSearchParams(window.location.search).get("counter") || "main";
  const { state, version, status, attached, error, live } = useLiveState("Counter", counter);
  const [problem, setProblem] = useState(null);

  // Every write is a promise: a refusal or an offline write is shown, never dropped silently.
  const write = (action) => () => {
    setProblem(null);
    action().catch((failure) => setProblem(failure.message));
  };

  const count = typeof state.count === "number" ? state.count : null;
  return (
    <main className="card" aria-busy={!attached}>
      <header>
        <h1>Shared counter</h1>
        <span id="status" className={`status ${status}`} role="status">
          {LABELS[status] ?? status}
        </span>
      </header>
      <p className="hint">
        Everyone on <code>{counter}</code> sees the same number. Open this page twice.
      </p>
      <output id="count" className="count" aria-live="polite" aria-label="Count">
        {count ?? "–"}
      </output>
      <div className="buttons">
        <button id="decrement" type="button" onClick={write(() => live.increment("count", -1))}>
          −1
        </button>
        <button id="increment" type="button" className="primary" onClick={write(() => live.increment("count", 1))}>
          +1
        </button>
        <button id="reset" type="button" onClick={write(() => live.reset())}>
          Reset
        </button>
      </div>
      <p className="meta">
        version <span id="version">{version}</span>
        {state.last_by ? <> · last change by {state.last_by}</> : null}
      </p>
      {(problem || error) && (
        <p id="error" className="error" role="alert">
          {problem || error.message}
        </p>
      )}
    </main>
  );
}
