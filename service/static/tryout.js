// jaxport web UI, "Try it in this browser": a finished job's TF.js model (TF.js, from
// /ui/tf.min.js) and its model.tflite (LiteRT.js, from /ui/litertjs/) run here on the same
// input, side by side. An image input (rank 4, NHWC, 3 channels, or pixel values by the
// report's input range) takes a dropped picture, resized on a canvas to the input's size;
// other inputs are random. Class scores (rank 2, 5+ classes) show their top 5.
// Uses api(), el(), $, guarded(), ApiError of app.js and fmtErr of jobs.js.
"use strict";

const TOP_K = 5;
const SHOWN_VALUES = 6;
const KEPT_VALUES = 10_000; // values kept on the page (data-values) per output

// --- loading the runtimes -----------------------------------------------------------------------

let tfLoading = null;

/** The global `tf`, loading /ui/tf.min.js on first use (its API error is shown if it fails). */
function loadTf() {
  tfLoading ??= (async () => {
    const code = await (await api("/ui/tf.min.js")).text();
    document.head.append(el("script", { textContent: code }));
    await window.tf.ready();
    return window.tf;
  })().catch((err) => {
    tfLoading = null;
    throw err;
  });
  return tfLoading;
}

let litertLoading = null;
const litertLog = [];

/** LiteRT.js (`@litertjs/core`) with its WASM runtime, loaded on first use. The runtime's log
 * lines (emscripten's print/printErr) are kept for the page instead of the console. */
function loadLiteRt() {
  litertLoading ??= (async () => {
    const keep = (line) => litertLog.push(line);
    window.Module = { print: keep, printErr: keep }; // read by the WASM loader, then cleared
    let litert;
    try {
      litert = await import("/ui/litertjs/core.js");
    } catch (err) {
      throw new ApiError(`LiteRT.js did not load: ${err.message}`,
                         "the server serves it from js/node_modules (scripts/install-js)");
    }
    await litert.loadLiteRt("/ui/litertjs/wasm/");
    return litert;
  })().catch((err) => {
    litertLoading = null;
    throw err;
  });
  return litertLoading;
}

/**
 * `bytes` of a .tflite flatbuffer with every dynamic dim (-1 in a tensor's shape_signature)
 * set to the size the converter recorded in its `shape` (1 for a batch): LiteRT.js 2.5 checks
 * input buffers against shape_signature and cannot resize inputs, so a model with a symbolic
 * batch runs at those sizes. Answers the patched copy and how many dims were pinned.
 * Offsets follow the TFLite schema: Model.subgraphs is field 2, SubGraph.tensors field 0,
 * Tensor.shape field 0 and Tensor.shape_signature field 7.
 */
function pinDynamicDims(bytes) {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const u32 = (p) => view.getUint32(p, true);
  const field = (table, index) => {
    const vtable = table - view.getInt32(table, true);
    const slot = 4 + 2 * index;
    const offset = slot < view.getUint16(vtable, true) ? view.getUint16(vtable + slot, true) : 0;
    return offset ? table + offset : 0;
  };
  const vector = (p) => ({ at: p + u32(p) + 4, length: u32(p + u32(p)) });
  const tables = (p) => {
    const { at, length } = vector(p);
    return Array.from({ length }, (_, i) => at + 4 * i + u32(at + 4 * i));
  };
  let pinned = 0;
  for (const subgraph of tables(field(u32(0), 2))) {
    for (const tensor of tables(field(subgraph, 0))) {
      const signature = field(tensor, 7);
      const shape = field(tensor, 0);
      if (!signature || !shape) continue;
      const sig = vector(signature);
      const dims = vector(shape);
      if (sig.length !== dims.length) continue;
      for (let i = 0; i < sig.length; i++) {
        if (view.getInt32(sig.at + 4 * i, true) === -1) {
          view.setInt32(sig.at + 4 * i, view.getInt32(dims.at + 4 * i, true), true);
          pinned += 1;
        }
      }
    }
  }
  return { bytes: out, pinned };
}

// --- inputs -------------------------------------------------------------------------------------

/** The function's picture input: rank 4 with fixed height and width, and 3 channels or pixel
 * values by the report's range (1, 3 or 4 channels). */
function imageInput(fn, job) {
  const ranges = job.inputs?.[fn]?.ranges ?? {};
  return Object.entries(job.functions[fn].inputs).map(([name, spec]) => ({ name, ...spec }))
    .find(({ name, dtype, shape }) => shape.length === 4 && Number.isInteger(shape[1])
      && Number.isInteger(shape[2]) && ["float32", "uint8"].includes(dtype)
      && (shape[3] === 3 || ([1, 3, 4].includes(shape[3]) && /pixel/.test(ranges[name]?.why ?? ""))));
}

/** How 0..255 pixels map to what the model takes: the report's stated range, else 0..255
 * (keras.applications models take those and preprocess inside). */
function pixelScale(range) {
  if (range?.kind === "uniform" && Number.isFinite(range.low) && Number.isFinite(range.high)) {
    return { low: range.low, high: range.high, why: `scaled to [${range.low}, ${range.high}]: ${range.why}` };
  }
  return { low: 0, high: 255, why: "0–255: the report states no range (keras.applications models preprocess inside)" };
}

/** Concrete dims: symbolic ones are 1 (the sizes LiteRT.js runs model.tflite at). */
const concrete = (shape) => shape.map((d) => (Number.isInteger(d) && d >= 0 ? d : 1));

/** A random input: the report's range where it states one (ids, uniform), else ints in
 * 0..7, fair bools and floats uniform in [-1, 1). */
function randomInput(spec, range) {
  const dims = concrete(spec.shape);
  const length = dims.reduce((a, b) => a * b, 1);
  const bounded = range && Number.isFinite(range.low) && Number.isFinite(range.high);
  const [low, high] = bounded ? [range.low, range.high] : spec.dtype === "int32" ? [0, 7] : [-1, 1];
  if (spec.dtype === "int32") {
    return { ...spec, dims, data: Int32Array.from({ length }, () => low + Math.floor(Math.random() * (high - low + 1))) };
  }
  if (spec.dtype === "bool" || spec.dtype === "uint8") {
    const top = spec.dtype === "bool" ? 1 : Math.min(high, 255);
    return { ...spec, dims, data: Uint8Array.from({ length }, () => Math.floor(Math.random() * (top + 1))) };
  }
  return { ...spec, dims, data: Float32Array.from({ length }, () => low + Math.random() * (high - low)) };
}

/** The canvas's pixels as the input: RGB (or gray, or RGBA), mapped to the model's range. */
function pictureInput(spec, canvas, scale) {
  const [, h, w, c] = spec.shape;
  const rgba = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const Typed = spec.dtype === "uint8" ? Uint8Array : Float32Array;
  const data = new Typed(h * w * c);
  const map = (p) => (spec.dtype === "uint8" ? p : scale.low + (p / 255) * (scale.high - scale.low));
  for (let i = 0; i < h * w; i++) {
    if (c === 1) data[i] = map((rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 3);
    else for (let k = 0; k < c; k++) data[c * i + k] = map(rgba[4 * i + k]);
  }
  return { ...spec, dims: [1, h, w, c], data };
}

// --- running ------------------------------------------------------------------------------------

/** Run function `fn` of the job's TF.js model on `inputs`; answers outputs and timings. */
async function runTfjs(job, fn, inputs) {
  const tf = await loadTf();
  const functions = Object.keys(job.functions);
  const path = functions.length === 1 ? "model.json" : `${fn}/model.json`;
  const member = path.split("/").map(encodeURIComponent).join("/");
  const url = new URL(`/v1/jobs/${encodeURIComponent(job.id)}/tfjs/${member}`, window.location.href);
  const t0 = performance.now();
  const model = await tf.loadGraphModel(url.href, { requestInit: { headers: authHeaders() } });
  const loadMs = performance.now() - t0;
  const feeds = Object.fromEntries(inputs.map((x) => [x.name, tf.tensor(x.data, x.dims, x.dtype)]));
  const names = Object.keys(job.functions[fn].outputs);
  try {
    const once = async () => {
      const start = performance.now();
      const raw = await model.executeAsync(feeds, names);
      const tensors = Array.isArray(raw) ? raw : [raw];
      const values = await Promise.all(tensors.map((t) => t.data()));
      const ms = performance.now() - start;
      const outputs = names.map((name, i) => ({ name, shape: tensors[i].shape, dtype: tensors[i].dtype, values: values[i] }));
      tf.dispose(tensors);
      return { ms, outputs };
    };
    const first = await once();
    const second = await once();
    return { runtime: `TF.js ${tf.version.tfjs}, ${tf.getBackend()} backend`, loadMs,
             firstMs: first.ms, runMs: second.ms, outputs: second.outputs };
  } finally {
    tf.dispose(Object.values(feeds));
    model.dispose();
  }
}

/** Run signature `fn` of the job's model.tflite in LiteRT.js on `inputs`. */
async function runLiteRt(job, fn, inputs) {
  const litert = await loadLiteRt();
  const t0 = performance.now();
  const tflite = job.artifacts.find((a) => a.name === "model.tflite");
  const fetched = new Uint8Array(await (await api(tflite.url)).arrayBuffer());
  const { bytes, pinned } = pinDynamicDims(fetched);
  const accelerator = litert.getDefaultEnvironment().webGpuDevice ? "webgpu" : "wasm";
  const model = await litert.loadAndCompile(bytes, { accelerator });
  const loadMs = performance.now() - t0;
  const tensors = [];
  try {
    const runner = model.signatures[fn] ?? model;
    const byName = Object.fromEntries(inputs.map((x) => [x.name, x]));
    const feeds = {};
    for (const detail of runner.getInputDetails()) {
      const x = byName[detail.name];
      if (!x) throw new ApiError(`model.tflite's ${fn} has an input ${detail.name} the report does not name`);
      feeds[detail.name] = new litert.Tensor(x.data, x.dims);
      tensors.push(feeds[detail.name]);
    }
    const once = async () => {
      const start = performance.now();
      const result = await runner.run(feeds);
      const outputs = [];
      for (const [name, t] of Object.entries(result)) {
        const values = await t.data();
        outputs.push({ name, shape: [...t.type.layout.dimensions], dtype: t.type.dtype, values });
        t.delete();
      }
      return { ms: performance.now() - start, outputs };
    };
    const first = await once();
    const second = await once();
    // a model WebGPU cannot take whole is compiled again for WASM (LiteRT.js warns in the console)
    const how = model.options.accelerator === "webgpu"
      ? `WebGPU${model.isFullyAccelerated ? "" : " with WASM for the ops it lacks"}`
      : accelerator === "webgpu" ? "WASM (not every op runs on WebGPU)" : "WASM (XNNPack; no WebGPU adapter here)";
    return { runtime: `LiteRT.js, ${how}`, loadMs, firstMs: first.ms, runMs: second.ms,
             outputs: second.outputs,
             note: pinned ? `${pinned} dynamic dim(s) of model.tflite pinned to the converter's sizes (LiteRT.js cannot resize inputs)` : "" };
  } finally {
    for (const t of tensors) t.delete();
    model.delete();
  }
}

// --- showing ------------------------------------------------------------------------------------

/** The "Try it" blocks of a finished job: one per function, for the runtimes it has. */
function showTryout(job) {
  const has = (target, artifact) => job.targets[target]?.status === "ok"
    && job.artifacts.some((a) => a.name === artifact);
  const runtimes = [...(has("tfjs", "tfjs.zip") ? [["tfjs", "TF.js", runTfjs]] : []),
                    ...(has("tflite", "model.tflite") ? [["litert", "LiteRT.js", runLiteRt]] : [])];
  $("#tryout").hidden = !runtimes.length;
  $("#tryout-functions").replaceChildren(...(runtimes.length ? Object.keys(job.functions) : [])
    .map((fn) => tryoutBlock(job, fn, runtimes)));
}

function tryoutBlock(job, fn, runtimes) {
  const image = imageInput(fn, job);
  const scale = image ? pixelScale(job.inputs?.[fn]?.ranges?.[image.name]) : null;
  const canvas = el("canvas", { className: "picture" });
  const pictureState = el("span", { className: "muted", textContent: "no picture: random pixels" });
  let picture = false;
  const results = el("div", { className: "runs" },
    ...runtimes.map(([key, label]) => el("section", { className: `run run-${key}` },
      el("h5", { textContent: label }), el("p", { className: "muted", textContent: "not run yet" }))));
  const agreement = el("p", { className: "agreement" });
  const button = el("button", { type: "button", className: "run-model",
                                textContent: `Run ${fn} with ${runtimes.map(([, l]) => l).join(" and ")}` });
  button.onclick = guarded(async () => {
    button.disabled = true;
    try {
      const ranges = job.inputs?.[fn]?.ranges ?? {};
      const inputs = Object.entries(job.functions[fn].inputs).map(([name, spec]) =>
        (image && name === image.name && picture ? pictureInput(image, canvas, scale)
          : randomInput({ name, ...spec }, image?.name === name ? scale : ranges[name])));
      const done = [];
      for (const [key, label, run] of runtimes) {
        const column = results.querySelector(`.run-${key}`);
        column.replaceChildren(el("h5", { textContent: label }), el("p", { className: "muted", textContent: "running…" }));
        try {
          const result = await run(job, fn, inputs);
          column.replaceChildren(el("h5", { textContent: label }), ...runNodes(result));
          done.push([label, result]);
        } catch (err) {
          const log = key === "litert" && litertLog.length ? [litertLogNode()] : [];
          column.replaceChildren(el("h5", { textContent: label }),
            el("p", { className: "failure" }, ...errorNodes({ message: err.message, hint: err.hint || "" })), ...log);
        }
      }
      agreement.textContent = done.length === 2 ? agreementText(done) : "";
    } finally {
      button.disabled = false;
    }
  });
  const block = el("div", { className: "tryout" }, el("h4", { textContent: fn }));
  block.dataset.function = fn;
  if (image) {
    const [, h, w] = image.shape;
    canvas.width = w;
    canvas.height = h;
    const chooser = el("input", { type: "file", accept: "image/*", className: "picture-file" });
    const load = guarded(async (file) => {
      const bitmap = await createImageBitmap(file);
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, w, h);
      picture = true;
      pictureState.textContent = `${file.name} (${bitmap.width}×${bitmap.height}) resized to ${w}×${h}`;
      bitmap.close();
    });
    chooser.addEventListener("change", () => chooser.files[0] && load(chooser.files[0]));
    const zone = el("label", { className: "drop picture-drop" },
      el("span", { className: "drop-title", textContent: `Drop a picture for ${image.name}, or choose one` }),
      chooser, canvas, pictureState,
      el("span", { className: "drop-help", textContent: `resized to ${w}×${h}, pixels ${scale.why}` }));
    for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => e.preventDefault());
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer.files.length) load(event.dataTransfer.files[0]);
    });
    block.append(zone);
  } else {
    block.append(el("p", { className: "muted", textContent: "inputs: random (symbolic dims 1)" }));
  }
  block.append(button, results, agreement);
  return block;
}

function litertLogNode() {
  return el("details", {}, el("summary", { textContent: "LiteRT.js log" }),
            el("pre", { textContent: litertLog.join("\n") }));
}

/** A run's timings and its outputs: shape, first values, and the top 5 of class scores. */
function runNodes(result) {
  const nodes = [el("p", { className: "runtime", textContent: result.runtime }),
    el("p", { className: "timing", textContent:
      `load ${result.loadMs.toFixed(0)} ms · first run ${result.firstMs.toFixed(1)} ms · run ${result.runMs.toFixed(1)} ms` })];
  if (result.note) nodes.push(el("p", { className: "muted", textContent: result.note }));
  for (const out of result.outputs) {
    const head = Array.from(out.values.slice(0, SHOWN_VALUES), (v) => Number(v).toPrecision(4));
    if (out.values.length > SHOWN_VALUES) head.push("…");
    const node = el("div", { className: "output" },
      el("p", { textContent: `${out.name}: shape [${out.shape.join(", ")}] ${out.dtype}` }),
      el("code", { textContent: `[${head.join(", ")}]` }));
    node.dataset.output = out.name;
    node.dataset.values = JSON.stringify(Array.from(out.values.slice(0, KEPT_VALUES), Number));
    const classes = out.shape.length === 2 && out.shape[0] === 1 && out.shape[1] >= TOP_K
      && String(out.dtype).startsWith("float");
    if (classes) node.append(topK(out.values));
    nodes.push(node);
  }
  return nodes;
}

function topK(values) {
  const best = Array.from(values, (score, index) => ({ index, score }))
    .sort((a, b) => b.score - a.score).slice(0, TOP_K);
  return el("ol", { className: "top5" }, ...best.map(({ index, score }) => {
    const item = el("li", { textContent: `class ${index}: ${score.toPrecision(4)}` });
    item.dataset.class = String(index);
    item.dataset.score = String(score);
    return item;
  }));
}

/** How far the two runtimes' outputs are apart, per output: max |a − b| and ÷ max |a|. */
function agreementText([[labelA, a], [labelB, b]]) {
  const parts = a.outputs.map((out) => {
    const other = b.outputs.find((o) => o.name === out.name);
    if (!other || other.values.length !== out.values.length) return `${out.name}: not comparable`;
    let diff = 0;
    let scale = 0;
    out.values.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(v - other.values[i]));
      scale = Math.max(scale, Math.abs(v));
    });
    return `${out.name}: max |Δ| ${fmtErr(diff)}${scale ? ` (÷ scale ${fmtErr(diff / scale)})` : ""}`;
  });
  return `${labelA} vs ${labelB} on the same input: ${parts.join(", ")}`;
}
