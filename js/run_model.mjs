// jaxport's TF.js runner: a persistent process that loads converted graph models from local
// files and runs them on the pure-JS cpu backend (what TF.js users in browsers fall back to).
//
// Protocol (lines.mjs): one JSON request per line on stdin, one JSON reply per line on stdout,
// in order. Nothing else is ever written to stdout (console output goes to stderr).
//
//   {"id": 1, "op": "ping"}
//     -> {"id": 1, "ok": true, "tfjs": "4.22.0", "backend": "cpu", "tensors": 12, "bytes": 3360}
//   {"id": 2, "op": "run", "model": "/abs/dir",            // holds model.json + weight shards
//    "inputs": {"x": {"dtype": "float32", "shape": [3, 4], "data": "<base64, little-endian>"}},
//    "bench": {"warmup": 2, "runs": 10}}                   // optional: time N runs after warm-up
//     -> {"id": 2, "ok": true,
//         "outputs": {"y": {"dtype": "float32", "shape": [3, 2], "data": "...",
//                           "signature_dtype": "DT_FLOAT"}},
//         "timing": {"runs": 10, "median_ms": 1.2, "min_ms": 1.1, "max_ms": 1.5}}
//   on failure -> {"id": 2, "ok": false, "stage": "load" | "run" | "request", "error": "..."}
//
// Inputs and outputs are keyed by the model's signature names (model.json `signature`); the
// model runs with `executeAsync`, which also handles control flow (while loops).
// Input dtypes: float32, int32, bool (1 byte per element). Loaded models are cached per
// directory (reloaded when model.json changes), at most MAX_MODELS at a time.
// After a run the runner disposes the inputs and the outputs it computed, never an output that
// is one of the model's own tensors (a weight or constant returned as is): the cached model
// needs them for the next run. `ping` reports tf.memory() so callers can check nothing leaks.

import { readFile, stat } from "node:fs/promises";
import path from "node:path";

import { consoleToStderr, serve } from "./lines.mjs";
import { summarize } from "./timing.mjs";

// stdout carries replies only. executeAsync warns on every run of a model without control
// flow; that advice does not apply to a verifier, so it is dropped.
consoleToStderr(/^This model execution did not contain any nodes with control flow/);

const tf = await import("@tensorflow/tfjs");
await tf.setBackend("cpu");
await tf.ready();

const MAX_MODELS = 4;
const models = new Map(); // dir -> {version, model, weights}, in least-recently-used order

const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };
// Outputs may also be complex64: TF.js reads them as interleaved (re, im) float32 pairs, which
// is numpy's complex64 layout.
const OUTPUT_TYPED = { ...TYPED, complex64: Float32Array };

/** An IOHandler reading model.json and its weight shards from `dir` (no fetch, no http). */
function fileHandler(dir) {
  return {
    async load() {
      const modelJSON = JSON.parse(await readFile(path.join(dir, "model.json"), "utf8"));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          for (const rel of group.paths) {
            const file = path.resolve(dir, rel);
            if (path.relative(dir, file).startsWith("..")) {
              throw new Error(`weight path ${rel} leaves the model directory`);
            }
            const bytes = await readFile(file);
            buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          }
          specs.push(...group.weights);
        }
        return [specs, buffers];
      });
    },
  };
}

async function getModel(dir) {
  const { mtimeMs, ino, size } = await stat(path.join(dir, "model.json"));
  const version = `${mtimeMs}:${ino}:${size}`; // a rewritten or replaced model.json differs
  const cached = models.get(dir);
  models.delete(dir);
  if (cached && cached.version === version) {
    models.set(dir, cached);
    return cached;
  }
  cached?.model.dispose();
  const model = await tf.loadGraphModel(fileHandler(dir));
  // The tensors the model owns: executeAsync returns these themselves for an output that is a
  // weight or constant node, so they must outlive every run.
  const entry = { version, model, weights: new Set(Object.values(model.weights).flat()) };
  models.set(dir, entry);
  for (const [oldDir, old] of models) {
    if (models.size <= MAX_MODELS) break;
    old.model.dispose();
    models.delete(oldDir);
  }
  return entry;
}

/** Dispose the tensors of a run except those in `keep` (the model's weights, the inputs). */
function disposeExcept(tensors, keep) {
  tf.dispose(tensors.filter((t) => !keep.has(t)));
}

function decode(name, { dtype, shape, data }) {
  const Typed = TYPED[dtype];
  if (!Typed) throw new Error(`input ${name}: dtype ${dtype} is not one of ${Object.keys(TYPED)}`);
  const bytes = Buffer.from(data, "base64");
  const aligned = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return tf.tensor(new Typed(aligned), shape, dtype);
}

async function encode(tensor) {
  if (!(tensor.dtype in OUTPUT_TYPED)) throw new Error(`output dtype ${tensor.dtype} is not supported`);
  // The cpu backend may hold a bool or int tensor in another typed array than its dtype's
  // (e.g. bool values in an Int32Array): re-pack so the bytes match the dtype on the wire.
  const Typed = OUTPUT_TYPED[tensor.dtype];
  const raw = await tensor.data();
  const values = raw instanceof Typed ? raw : Typed.from(raw);
  const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return { dtype: tensor.dtype, shape: tensor.shape, data: bytes.toString("base64") };
}

async function execute(model, inputs, outputNames) {
  const result = await model.executeAsync(inputs, outputNames);
  return Array.isArray(result) ? result : [result];
}

async function run(request) {
  const dir = path.resolve(request.model);
  let model, weights;
  try {
    ({ model, weights } = await getModel(dir));
  } catch (err) {
    return { ok: false, stage: "load", error: `loading ${dir}: ${err.message}` };
  }
  const signatureOutputs = model.signature?.outputs ?? {};
  const outputNames = Object.keys(signatureOutputs);
  if (outputNames.length === 0) {
    return { ok: false, stage: "load", error: `${dir}/model.json has no signature outputs` };
  }
  const inputs = {};
  let outs = [];
  try {
    for (const [name, spec] of Object.entries(request.inputs ?? {})) inputs[name] = decode(name, spec);
    outs = await execute(model, inputs, outputNames);
    let timing = null;
    if (request.bench) {
      const { warmup = 1, runs = 10 } = request.bench;
      const times = [];
      const keep = new Set([...weights, ...Object.values(inputs)]); // an input may be an output
      for (let i = 0; i < warmup + runs; i++) {
        disposeExcept(outs, keep);
        const t0 = performance.now();
        outs = await execute(model, inputs, outputNames);
        await Promise.all(outs.map((t) => t.data()));
        if (i >= warmup) times.push(performance.now() - t0);
      }
      timing = summarize(times);
    }
    const outputs = {};
    for (const [i, name] of outputNames.entries()) {
      outputs[name] = { ...(await encode(outs[i])), signature_dtype: signatureOutputs[name].dtype };
    }
    return { ok: true, outputs, timing };
  } catch (err) {
    return { ok: false, stage: "run", error: err.message };
  } finally {
    disposeExcept([...Object.values(inputs), ...outs], weights);
  }
}

function ping() {
  const { numTensors, numBytes } = tf.memory();
  return { ok: true, tfjs: tf.version.tfjs, backend: tf.getBackend(), tensors: numTensors, bytes: numBytes };
}

/** A new session of a long-lived runner (lines.mjs `--listen`): drop every loaded model. */
function reset() {
  for (const { model } of models.values()) model.dispose();
  models.clear();
}

await serve({ ping, run, reset });
