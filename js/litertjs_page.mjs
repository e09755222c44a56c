// The page run_litertjs.mjs opens in headless Chromium: LiteRT.js (@litertjs/core, single-
// threaded WASM CPU backend, XNNPack) loaded from js/node_modules, nothing from the internet.
// It exposes `window.jaxport`, which the Node side calls with page.evaluate:
//
//   await jaxport.init()  -> {relaxed_simd: true}      // loads the WASM runtime, once
//   await jaxport.run({url, version, signature, inputs, bench})
//     -> {ok: true, outputs: {name: {dtype, shape, data}}, timing}
//     -> {ok: false, stage: "load" | "run", error}
//
// `inputs`/`outputs` are {dtype, shape, data: base64 little-endian}; input dtypes on the wire
// are float32, int32 and bool (1 byte), converted to the dtype the signature declares
// (LiteRT.js tensors are float32, int32 or uint8). A compiled model is cached per `url`
// until `version` changes. Every tensor a run makes is deleted before it returns.

import * as litert from "@litertjs/core";

import { summarize } from "/timing.mjs";

const WIRE = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };
const TENSOR = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array };
const models = new Map(); // url -> {version, model}

function message(err) {
  return err?.message ?? String(err);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

async function compiled(url, version) {
  const cached = models.get(url);
  if (cached?.version === version) return cached.model;
  cached?.model.delete();
  models.delete(url);
  // The version in the query: a changed file is fetched again, never from the HTTP cache.
  const model = await litert.loadAndCompile(`${url}?v=${encodeURIComponent(version)}`,
    { accelerator: "wasm", cpuOptions: { numThreads: 1 } });
  models.set(url, { version, model });
  return model;
}

function toTensor(name, detail, { dtype, shape, data }) {
  const Wire = WIRE[dtype];
  const Typed = TENSOR[detail.dtype];
  if (!Wire) throw new Error(`input ${name}: wire dtype ${dtype} is not one of ${Object.keys(WIRE)}`);
  if (!Typed) throw new Error(`input ${name}: LiteRT.js has no ${detail.dtype} tensors`);
  const bytes = fromBase64(data);
  const wire = new Wire(bytes.buffer, 0, bytes.byteLength / Wire.BYTES_PER_ELEMENT);
  return new litert.Tensor(wire instanceof Typed ? wire : Typed.from(wire), shape);
}

async function encode(tensor) {
  const values = await tensor.data();
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return { dtype: tensor.type.dtype, shape: Array.from(tensor.type.layout.dimensions), data: toBase64(bytes) };
}

function deleteAll(tensors) {
  for (const t of Object.values(tensors)) if (!t.deleted) t.delete();
}

async function time(runner, tensors, { warmup = 1, runs = 10 }) {
  const times = [];
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const outs = await runner.run(tensors);
    await Promise.all(Object.values(outs).map((t) => t.data()));
    if (i >= warmup) times.push(performance.now() - t0);
    deleteAll(outs);
  }
  return summarize(times);
}

async function run({ url, version, signature, inputs, bench }) {
  let runner;
  try {
    const model = await compiled(url, version);
    runner = model.signatures[signature];
    if (!runner) {
      const known = Object.keys(model.signatures).join(", ") || "none";
      return { ok: false, stage: "load", error: `the model has no signature ${signature} (it has ${known})` };
    }
  } catch (err) {
    return { ok: false, stage: "load", error: message(err) };
  }
  const tensors = {};
  let outs = {};
  try {
    for (const detail of runner.getInputDetails()) {
      if (!(detail.name in inputs)) throw new Error(`input ${detail.name} missing from the request`);
      tensors[detail.name] = toTensor(detail.name, detail, inputs[detail.name]);
    }
    outs = await runner.run(tensors);
    const outputs = {};
    for (const [name, tensor] of Object.entries(outs)) outputs[name] = await encode(tensor);
    const timing = bench ? await time(runner, tensors, bench) : null;
    return { ok: true, outputs, timing };
  } catch (err) {
    return { ok: false, stage: "run", error: message(err) };
  } finally {
    deleteAll(tensors);
    deleteAll(outs);
  }
}

async function init() {
  await litert.loadLiteRt("/litertjs/core/wasm/");
  return { relaxed_simd: await litert.supportsFeature("relaxedSimd") };
}

/** Delete every compiled model (a new session of a long-lived runner starts empty). */
function reset() {
  for (const { model } of models.values()) model.delete();
  models.clear();
}

window.jaxport = { init, run, reset };
