// The line protocol jaxport's JS runners speak (run_model.mjs, run_litertjs.mjs): one JSON
// request per line on stdin, one JSON reply per line on stdout, in order, each reply carrying
// the request's `id`. Nothing else may reach stdout, so console output is sent to stderr.

import readline from "node:readline";

/** Send console.log/info/warn/debug to stderr, dropping messages that match `noise`. */
export function consoleToStderr(noise = null) {
  for (const level of ["log", "info", "warn", "debug"]) {
    console[level] = (...args) => {
      if (!noise?.test(String(args[0]))) console.error(...args);
    };
  }
}

/**
 * Answer requests until stdin closes. `ops` maps an op name to `async (request) => reply`;
 * a reply is `{ok: true, ...}` or `{ok: false, stage, error}`. A bad line or an unknown op
 * gets `{ok: false, stage: "request"}`; an exception thrown by an op is stage "run".
 */
export async function serve(ops) {
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    let request;
    let reply;
    try {
      request = JSON.parse(line);
    } catch (err) {
      reply = { id: null, ok: false, stage: "request", error: `bad JSON request: ${err.message}` };
    }
    if (request) {
      const { id = null, op } = request;
      const handler = Object.hasOwn(ops, op) ? ops[op] : null;
      try {
        reply = handler
          ? { id, ...(await handler(request)) }
          : { id, ok: false, stage: "request", error: `unknown op ${JSON.stringify(op)}` };
      } catch (err) {
        reply = { id, ok: false, stage: "run", error: err?.message ?? String(err) };
      }
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
}
