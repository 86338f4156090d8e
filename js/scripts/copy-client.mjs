// The Python endpoint serves the built client as /livestate.js, so a plain page needs no build:
// copy dist/index.js into the Python package (committed, so a pip install carries it).
// With --check, only verify that the committed copy is the current build (`make test` does).
import { copyFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const built = join(root, "dist", "index.js");
const served = join(root, "..", "src", "livestate", "asgi", "client.js");
if (process.argv.includes("--check")) {
  if (!readFileSync(built).equals(readFileSync(served))) {
    console.error("src/livestate/asgi/client.js is not the current build of js/src/index.ts: run `npm run build` in js/ and commit it.");
    process.exit(1);
  }
} else {
  copyFileSync(built, served);
}
