// jaxport web UI, the shared part: API calls with the key, errors with their hint, the
// archive (file picker or drag-and-drop) and the submission. The other files: options.js (the
// options form and the shell commands), inspect.js, jobs.js (list, live job, cards),
// chart.js, tryout.js (TF.js and LiteRT.js in this browser). Plain browser JS over the v1 API;
// nothing is loaded from the internet.
"use strict";

const KEY_STORAGE = "jaxport.apiKey";
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
  showCommands();
  return refreshJobs();
}

// --- the archive --------------------------------------------------------------------------------

/** The chosen archive: from the file picker, or dropped on the drop zone. */
function chosenFile() {
  return $("#file").files[0] ?? null;
}

function fileChosen() {
  const file = chosenFile();
  $("#file-name").textContent = file ? `${file.name} (${file.size.toLocaleString("en")} bytes)` : "";
  showCommands();
}

/** Dropping a file puts it in the file input (as if picked), which inspects it. */
function setUpDropZone() {
  const zone = $("#drop");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (!event.dataTransfer.files.length) return;
    const files = new DataTransfer();
    files.items.add(event.dataTransfer.files[0]);
    $("#file").files = files.files;
    $("#file").dispatchEvent(new Event("change"));
  });
}

// --- submit -------------------------------------------------------------------------------------

async function submitJob(event) {
  event.preventDefault();
  clearError();
  const file = chosenFile();
  if (!file) {
    throw new ApiError("choose an archive first", "a .keras file, or a .zip/.tar.gz with jaxport.toml");
  }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("options", JSON.stringify(readOptions()));
  $("#submit").disabled = true;
  try {
    const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
    await showFirstPage();
    selectJob(job.id);
  } finally {
    $("#submit").disabled = false;
  }
}

// --- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#api-key").value = localStorage.getItem(KEY_STORAGE) ?? "";
  showKeyState();
  buildOptionsForm();
  setUpDropZone();
  $("#key-form").addEventListener("submit", guarded(saveKey));
  $("#submit-form").addEventListener("submit", guarded(submitJob));
  $("#file").addEventListener("change", fileChosen);
  $("#options").addEventListener("input", showCommands);
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", guarded(() => copyText(button)));
  }
  showCommands();
  setUpJobList();
});
