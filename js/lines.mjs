// The line protocol jaxport's JS runners speak (run_model.mjs, run_litertjs.mjs): one JSON
// request per line on stdin (or on a Unix socket, see `serve`), one JSON reply per line on
// stdout (or the socket), in order, each reply carrying the request's `id`. Nothing else may
// reach stdout, so console output is sent to stderr.

import readline from "node:readline";

/** Send console.log/info/warn/debug to stderr, dropping messages that match `noise`. */
export function consoleToStderr(noise = null) {
  for (const level of ["log", "info", "warn", "debug"]) {
    console[level] = (...args) => {
      if (!noise?.test(String(args[0]))) console.error(...args);
    };
  }
}

/** The reply to one request line (never throws). */
async function answerLine(ops, line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    return { id: null, ok: false, stage: "request", error: `bad JSON request: ${err.message}` };
  }
  const { id = null, op } = request;
  const handler = Object.hasOwn(ops, op) && op !== "reset" ? ops[op] : null;
  try {
    return handler
      ? { id, ...(await handler(request)) }
      : { id, ok: false, stage: "request", error: `unknown op ${JSON.stringify(op)}` };
  } catch (err) {
    return { id, ok: false, stage: "run", error: err?.message ?? String(err) };
  }
}

/** Answer the request lines of `input`, in order, writing each reply with `write`. */
async function answerAll(ops, input, write) {
  for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
    if (line.trim()) write(JSON.stringify(await answerLine(ops, line)) + "\n");
  }
}

/**
 * Answer requests. `ops` maps an op name to `async (request) => reply`; a reply is
 * `{ok: true, ...}` or `{ok: false, stage, error}`. A bad line or an unknown op gets
 * `{ok: false, stage: "request"}`; an exception thrown by an op is stage "run".
 *
 * By default the requests come on stdin and `serve` returns when stdin closes. Started with
 * `--listen PATH`, the process instead keeps running and serves clients on the Unix socket
 * PATH one at a time, each connection a session: before a session's first request,
 * `ops.reset()` (when given, not callable as a request) drops what earlier sessions loaded;
 * a client that goes away mid-request only loses its reply. The process then exits when its
 * stdin closes (its parent went away).
 */
export async function serve(ops) {
  const at = process.argv.indexOf("--listen");
  if (at < 0) {
    await answerAll(ops, process.stdin, (text) => process.stdout.write(text));
    return;
  }
  const net = await import("node:net");
  let turn = Promise.resolve(); // sessions run one after another
  const server = net.createServer((socket) => {
    socket.on("error", () => {}); // the client died: its session ends
    turn = turn.then(async () => {
      await ops.reset?.();
      await answerAll(ops, socket, (text) => socket.writable && socket.write(text));
    }).catch((err) => console.error(`session failed: ${err?.message ?? err}`));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(process.argv[at + 1], resolve);
  });
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once("end", resolve).once("close", resolve));
  server.close();
}
