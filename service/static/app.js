// jaxport web UI: submit an archive, follow its job, download the artifacts, and run the
// TF.js model in this browser. Plain browser JS over the v1 API; nothing is loaded from the
// internet (TF.js itself comes from /ui/tf.min.js, on first use).
"use strict";

const TERMINAL = new Set(["succeeded", "partial", "failed", "canceled"]);
const KEY_STORAGE = "jaxport.apiKey";
const POLL_MS = 1000;
const $ = (selector) => document.querySelector(selector);

/** An API error answer `{error: {code, message, hint}}` (or a transport failure). */
class ApiError extends Error {
  constructor(message, hint = "", code = "", status = 0) {
    super(message);
    this.hint = hint;
    this.code = code;
    this.status = status;
  }
}

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch `path` with the API key; resolves to the response when it is 2xx, else throws ApiError. */
async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
  if (response.ok) return response;
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // not the service's JSON error shape: reported by status below
  }
  throw new ApiError(error?.message ?? `HTTP ${response.status} ${response.statusText}`,
                     error?.hint ?? "", error?.code ?? "", response.status);
}

function showError(err) {
  const box = $("#error");
  const code = err.code ? ` [${err.code}]` : "";
  box.textContent = `${err.message}${code}${err.hint ? `\nHint: ${err.hint}` : ""}`;
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
}

/** Run an async UI action; any failure is shown in the error box. */
function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (err) {
      showError(err);
    }
  };
}

/** A DOM element with `props` (textContent, className, onclick, ...) and child nodes/strings. */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// --- API key ------------------------------------------------------------------------------------

function showKeyState() {
  $("#key-state").textContent = localStorage.getItem(KEY_STORAGE) ? "key saved" : "no key";
}

function saveKey(event) {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  showKeyState();
  clearError();
  return refreshJobs();
}

// --- submit -------------------------------------------------------------------------------------

async function submitJob(event) {
  event.preventDefault();
  clearError();
  const file = $("#file").files[0];
  const targets = [...document.querySelectorAll("input[name=target]:checked")].map((c) => c.value);
  if (!file) {
    throw new ApiError("choose an archive first", "a .keras file, or a .zip/.tar.gz with jaxport.toml");
  }
  if (!targets.length) throw new ApiError("choose at least one target");
  const options = { targets };
  const name = $("#job-name").value.trim();
  if (name) options.name = name;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("options", JSON.stringify(options));
  $("#submit").disabled = true;
  try {
    const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
    await refreshJobs();
    selectJob(job.id);
  } finally {
    $("#submit").disabled = false;
  }
}

// --- job list -----------------------------------------------------------------------------------

let selectedJob = null;

async function refreshJobs() {
  const { jobs } = await (await api("/v1/jobs?limit=50")).json();
  const rows = jobs.map((job) => {
    const row = el("tr", { onclick: () => selectJob(job.id) },
      el("td", { textContent: job.created_at.replace("T", " ").slice(0, 19) }),
      el("td", { textContent: job.upload.filename ?? "" }),
      el("td", { textContent: job.name ?? "" }),
      el("td", { textContent: job.status, className: `status-${job.status}` }),
      el("td", {}, el("code", { textContent: job.id })));
    row.dataset.job = job.id;
    row.classList.toggle("selected", job.id === selectedJob);
    return row;
  });
  $("#jobs tbody").replaceChildren(...rows);
}

// --- the selected job ---------------------------------------------------------------------------

let pollTimer = null;

/** Show job `id` and poll it about once a second until it reaches a terminal status. */
function selectJob(id) {
  selectedJob = id;
  clearTimeout(pollTimer);
  for (const row of document.querySelectorAll("#jobs tbody tr")) {
    row.classList.toggle("selected", row.dataset.job === id);
  }
  $("#tfjs-result").textContent = "";
  poll(id);
}

async function poll(id) {
  let job;
  try {
    job = await (await api(`/v1/jobs/${encodeURIComponent(id)}`)).json();
  } catch (err) {
    if (id === selectedJob) showError(err);
    return;
  }
  if (id !== selectedJob) return; // another job was selected meanwhile
  renderJob(job);
  if (TERMINAL.has(job.status)) {
    await guarded(refreshJobs)();
  } else {
    pollTimer = setTimeout(() => poll(id), POLL_MS);
  }
}

function renderJob(job) {
  $("#job").hidden = false;
  $("#job-id").textContent = job.id;
  $("#job-status").textContent = job.status;
  $("#job-status").className = `status-${job.status}`;
  $("#job-stage").textContent = job.stage;
  $("#job-message").textContent = job.message ? `· ${job.message}` : "";
  $("#job-progress").value = job.progress;
  const jobError = $("#job-error");
  jobError.hidden = !job.error;
  jobError.textContent = job.error ? errorText(job.error) : "";
  const warnings = job.warnings || [];
  $("#job-warnings").hidden = !warnings.length;
  $("#job-warnings").replaceChildren(...warnings.map((w) => el("li", { textContent: `warning: ${w}` })));
  const targets = Object.entries(job.targets).map(([name, t]) => targetRow(name, t));
  $("#targets tbody").replaceChildren(...targets);
  $("#artifacts").replaceChildren(...job.artifacts.map((a) => el("li", {},
    el("button", { type: "button", textContent: `Download ${a.name}`,
                   onclick: guarded(() => download(a)) }),
    ` ${a.bytes.toLocaleString()} bytes`)));
  const tfjsOk = job.targets.tfjs?.status === "ok" && job.artifacts.some((a) => a.name === "tfjs.zip");
  const functions = Object.keys(job.functions);
  $("#tfjs-models").replaceChildren(...(tfjsOk ? functions : []).map((fn) => {
    const path = functions.length === 1 ? "model.json" : `${fn}/model.json`;
    return el("button", { type: "button", className: "run-tfjs", textContent: `Run ${fn}`,
                          onclick: guarded(() => runTfjs(job.id, fn, path)) });
  }));
}

function errorText(error) {
  return `${error.message}${error.hint ? ` — hint: ${error.hint}` : ""}`;
}

function targetRow(name, t) {
  const fmt = (value, f = String) => (value === null || value === undefined ? "—" : f(value));
  return el("tr", { className: "target" },
    el("td", { textContent: name }),
    el("td", { textContent: t.status, className: `status-${t.status}` }),
    el("td", { textContent: name === "tflite" ? fmt(t.source) : "—" }),
    el("td", { textContent: fmt(t.parity?.passed, (p) => (p ? "yes" : "no")) }),
    el("td", { textContent: fmt(t.parity?.max_rel_err, (e) => e.toExponential(2)) }),
    el("td", { textContent: fmt(t.parity?.max_abs_err, (e) => e.toExponential(2)) }),
    el("td", { textContent: fmt(t.verify_seconds) }),
    el("td", { className: "failure" }, t.error ? errorText(t.error) : ""));
}

// --- downloads ----------------------------------------------------------------------------------

/** Save artifact `a`: an absolute (presigned) URL is followed directly; an API URL is fetched
 * with the API key and saved as a file. */
async function download(a) {
  clearError();
  if (/^https?:\/\//.test(a.url)) {
    window.location.assign(a.url);
    return;
  }
  const blob = await (await api(a.url)).blob();
  const url = URL.createObjectURL(blob);
  el("a", { href: url, download: a.name }).click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// --- TF.js in the browser -----------------------------------------------------------------------

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

/** A random input for a model input `{name, dtype, shape}`: unknown dims are 1 for the batch
 * (first) and 8 elsewhere; ints in 0..7, floats uniform in [-1, 1). */
function randomInput(tf, { name, dtype, shape }) {
  if (!shape) throw new ApiError(`input ${name} has an unknown rank`, "this page cannot make inputs for it");
  const dims = shape.map((d, i) => (d === null || d < 0 ? (i === 0 ? 1 : 8) : d));
  const length = dims.reduce((a, b) => a * b, 1);
  if (dtype === "int32") {
    return tf.tensor(Int32Array.from({ length }, () => Math.floor(Math.random() * 8)), dims, "int32");
  }
  if (dtype === "bool") return tf.tensor(Uint8Array.from({ length }, () => Math.random() < 0.5), dims, "bool");
  return tf.tensor(Float32Array.from({ length }, () => Math.random() * 2 - 1), dims, "float32");
}

/** Run function `fn` of a job's TF.js model (`path` in tfjs.zip) here; show its outputs. */
async function runTfjs(jobId, fn, path) {
  clearError();
  const result = $("#tfjs-result");
  try {
    result.textContent = await runModel(jobId, fn, path, (status) => { result.textContent = status; });
  } catch (err) {
    result.textContent = `${fn}: failed (see the error above)`;
    throw err;
  }
}

/** A report of one run: backend, input shapes, each output's name, shape and first values, and
 * the time from `executeAsync` until every output's values are read. */
async function runModel(jobId, fn, path, status) {
  status(`${fn}: loading TF.js…`);
  const tf = await loadTf();
  const member = path.split("/").map(encodeURIComponent).join("/");
  const url = new URL(`/v1/jobs/${encodeURIComponent(jobId)}/tfjs/${member}`, window.location.href);
  status(`${fn}: loading ${path}…`);
  const model = await tf.loadGraphModel(url.href, { requestInit: { headers: authHeaders() } });
  const inputs = {};
  let outputs = [];
  try {
    for (const info of model.inputs) inputs[info.name] = randomInput(tf, info);
    const names = Object.keys(model.signature?.outputs ?? {});
    const t0 = performance.now();
    const raw = await model.executeAsync(inputs, names.length ? names : undefined);
    outputs = Array.isArray(raw) ? raw : [raw];
    const values = await Promise.all(outputs.map((t) => t.data()));
    const ms = performance.now() - t0;
    const outNames = names.length ? names : model.outputNodes;
    const lines = outputs.map((t, i) => {
      const head = Array.from(values[i].slice(0, 6), (v) => Number(v).toPrecision(4));
      if (values[i].length > 6) head.push("…");
      return `output ${outNames[i]}: shape [${t.shape.join(", ")}] ${t.dtype} values [${head.join(", ")}]`;
    });
    const shapes = Object.entries(inputs).map(([n, t]) => `${n} [${t.shape.join(", ")}]`).join(", ");
    return [`${fn} on the ${tf.getBackend()} backend, inputs ${shapes}`, ...lines,
            `run time ${ms.toFixed(1)} ms`].join("\n");
  } finally {
    tf.dispose([...Object.values(inputs), ...outputs]);
    model.dispose();
  }
}

// --- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#api-key").value = localStorage.getItem(KEY_STORAGE) ?? "";
  showKeyState();
  $("#key-form").addEventListener("submit", guarded(saveKey));
  $("#submit-form").addEventListener("submit", guarded(submitJob));
  $("#refresh").addEventListener("click", guarded(refreshJobs));
  guarded(refreshJobs)();
});
