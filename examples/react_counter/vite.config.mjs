// The page imports the client from this repository's js/src (as `livestate` and
// `livestate/react`), so the example always runs the client under test.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const client = (file) => fileURLToPath(new URL(`../../js/src/${file}`, import.meta.url));

export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: [
      { find: /^livestate\/react$/, replacement: client("react.ts") },
      { find: /^livestate$/, replacement: client("index.ts") },
    ],
    dedupe: ["react", "react-dom"],
  },
  server: { proxy: { "/livestate": { target: "http://127.0.0.1:8000", ws: true } } },
  build: { outDir: "dist", emptyOutDir: true },
});
