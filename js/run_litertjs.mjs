// jaxport's LiteRT.js runner: runs .tflite files in headless Chromium through LiteRT.js
// (@litertjs/core, WASM CPU backend, 1 thread), driven by playwright-core. One process = one
// browser, started when the process starts; it serves the page, LiteRT.js and the models
// itself (playwright routes: nothing goes over the network, every other URL is refused).
//
// Protocol (lines.mjs): one JSON request per line on stdin, one JSON reply per line on stdout.
//
//   {"id": 1, "op": "ping"}
//     -> {"id": 1, "ok": true, "litertjs": "2.5.3", "chromium": "156.0...", "accelerator":
//         "wasm", "threads": 1, "relaxed_simd": true, "start_ms": 812.3}
//   {"id": 2, "op": "run", "model": "/abs/model.tflite", "signature": "serving_default",
//    "inputs": {"x": {"dtype": "float32", "shape": [3, 4], "data": "<base64, little-endian>"}},
//    "bench": {"warmup": 2, "runs": 10}}                    // optional: time runs in the page
//     -> {"id": 2, "ok": true, "outputs": {"y": {"dtype": "float32", "shape": [3, 2], "data": "..."}},
//         "timing": {"runs": 10, "median_ms": 1.2, "min_ms": 1.1, "max_ms": 1.5}}
//   on failure -> {"id": 2, "ok": false, "stage": "launch" | "load" | "run" | "request", "error": "..."}
//
// "launch": the browser could not be started (every request then gets that reply); "load":
// LiteRT.js could not load or compile the model; "run": it failed running it. Errors carry the
// page's console errors logged meanwhile (LiteRT.js reports a missing op kernel there).
// The browser is `JAXPORT_CHROMIUM` (default /usr/bin/chromium). With `--listen PATH` one
// browser serves session after session on that Unix socket (lines.mjs); each session starts
// with no model loaded.

import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { consoleToStderr, serve } from "./lines.mjs";

consoleToStderr();

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LITERT_DIR = path.join(HERE, "node_modules", "@litertjs");
const ORIGIN = "http://jaxport.localhost";
const CHROMIUM = process.env.JAXPORT_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
  "--disable-background-networking", "--disable-component-update", "--disable-extensions"];
const IMPORTS = {
  "@litertjs/core": "/litertjs/core/dist/index.js",
  "@litertjs/wasm-utils": "/litertjs/wasm-utils/dist/index.js",
};
const PAGE = `<!doctype html><meta charset="utf-8"><title>jaxport LiteRT.js</title>
<script type="importmap">${JSON.stringify({ imports: IMPORTS })}</script>
<script type="module" src="/litertjs_page.mjs"></script><body></body>`;
const PAGE_MODULES = new Set(["/litertjs_page.mjs", "/timing.mjs"]);
const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };

const modelFiles = new Map(); // "/models/N" -> absolute path of a .tflite file
const modelUrls = new Map(); // absolute path -> "/models/N"
let modelsServed = 0;
const consoleErrors = []; // the page's console errors since the current request began

/** The file a page URL names, or null: only the page, LiteRT.js and registered models. */
function fileFor(pathname) {
  if (PAGE_MODULES.has(pathname)) return path.join(HERE, pathname.slice(1));
  if (modelFiles.has(pathname)) return modelFiles.get(pathname);
  if (pathname.startsWith("/litertjs/")) {
    const file = path.resolve(LITERT_DIR, decodeURIComponent(pathname.slice("/litertjs/".length)));
    return path.relative(LITERT_DIR, file).startsWith("..") ? null : file;
  }
  return null;
}

async function answer(route) {
  const url = new URL(route.request().url());
  if (url.origin !== ORIGIN) return route.abort("blockedbyclient");
  if (url.pathname === "/") return route.fulfill({ status: 200, contentType: "text/html", body: PAGE });
  const file = fileFor(url.pathname);
  try {
    if (file === null) throw new Error("not served");
    const body = await readFile(file);
    const contentType = TYPES[path.extname(file)] ?? "application/octet-stream";
    return route.fulfill({ status: 200, contentType, body });
  } catch {
    return route.fulfill({ status: 404, contentType: "text/plain", body: `${url.pathname} not found` });
  }
}

async function launch() {
  const t0 = performance.now();
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
  const context = await browser.newContext({ serviceWorkers: "block" });
  await context.route("**/*", answer);
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("INFO:")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(`page error: ${err.message}`));
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction(() => window.jaxport !== undefined, null, { timeout: 60_000 });
  const features = await page.evaluate(() => window.jaxport.init());
  const litertjs = JSON.parse(await readFile(path.join(LITERT_DIR, "core", "package.json"), "utf8")).version;
  const info = { litertjs, chromium: browser.version(), accelerator: "wasm", threads: 1, ...features,
    start_ms: performance.now() - t0 };
  return { browser, page, info };
}

let session = null;
let launchError = null;
try {
  session = await launch();
} catch (err) {
  launchError = `${CHROMIUM}: ${err.message.split("\n")[0]}`;
}

function withConsole(reply) {
  if (reply.ok || consoleErrors.length === 0) return reply;
  return { ...reply, error: `${reply.error} (console: ${consoleErrors.slice(-4).join(" | ")})` };
}

async function run(request) {
  const file = path.resolve(request.model);
  const { mtimeMs, ino, size } = await stat(file);
  if (!modelUrls.has(file)) {
    modelUrls.set(file, `/models/${modelsServed++}.tflite`); // never reused: no stale cache
    modelFiles.set(modelUrls.get(file), file);
  }
  consoleErrors.length = 0;
  const reply = await session.page.evaluate((r) => window.jaxport.run(r), {
    url: modelUrls.get(file), version: `${mtimeMs}:${ino}:${size}`, signature: request.signature,
    inputs: request.inputs ?? {}, bench: request.bench ?? null,
  });
  return withConsole(reply);
}

async function reset() {
  modelFiles.clear();
  modelUrls.clear();
  await session?.page.evaluate(() => window.jaxport.reset());
}

const refused = async () => ({ ok: false, stage: "launch", error: launchError });
await serve(session ? { ping: async () => ({ ok: true, ...session.info }), run, reset }
  : { ping: refused, run: refused });
await session?.browser.close();
