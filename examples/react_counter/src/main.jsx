import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { LiveStateProvider } from "livestate/react";

import { App } from "./App.jsx";

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <LiveStateProvider url="/livestate/ws">
      <App />
    </LiveStateProvider>
  </StrictMode>,
);
