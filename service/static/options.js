// jaxport web UI, the conversion options: the form is built from OPTIONS, one row per option
// of the API (docs/api.md#options, jaxport/options.py), so a new option is one more row. Only
// values that differ from the API's defaults are sent (and shown in the shell commands).
// Uses el(), $ and ApiError of app.js.
"use strict";

/** One row per API option. `kind` picks the control (KINDS below); `default` is the API's
 * default (an option without one is left out of the request when its field is empty);
 * `min`/`max`/`step` bound numbers; `choices` are the allowed values (`none` labels "unset"). */
const OPTIONS = [
  { key: "targets", group: "Targets", label: "Targets", kind: "targets",
    choices: [["savedmodel", "SavedModel"], ["tflite", "TFLite"], ["tfjs", "TF.js"], ["onnx", "ONNX"]],
    default: ["savedmodel", "tflite", "tfjs"] },
  { key: "quantize", group: "TFLite", label: "Quantization", kind: "choice",
    choices: ["float16", "int8-weight-only", "int8-dynamic", "int8"], none: "none (float32 only)",
    default: null },
  { key: "litertjs", group: "TFLite", label: "Also check in LiteRT.js", kind: "flag",
    none: "server default", default: null },
  { key: "tfjs_quantize", group: "TF.js", label: "Weight quantization", kind: "choice",
    choices: ["float16", "uint8", "uint16"], none: "none (float32 only)", default: null },
  { key: "tfjs_shard_bytes", group: "TF.js", label: "Weight shard bytes", kind: "integer",
    min: 1024, default: 4194304 },
  { key: "onnx_opset", group: "ONNX", label: "Opset", kind: "integer", min: 17, max: 26, default: 23 },
  { key: "tolerance", group: "Verification", label: "Rule", kind: "choice",
    choices: ["scale", "elementwise"], default: "scale" },
  { key: "atol", group: "Verification", label: "atol", kind: "number", min: 0, default: 1e-4 },
  { key: "rtol", group: "Verification", label: "rtol", kind: "number", min: 0, default: 1e-3 },
  { key: "min_sqnr", group: "Quantized artifacts", label: "Min SQNR (dB)", kind: "number",
    min: 0, max: 200, default: null, placeholder: "per mode" },
  { key: "min_top1", group: "Quantized artifacts", label: "Min top-1", kind: "number",
    min: 0, max: 1, default: null, placeholder: "not gated" },
  { key: "batch_sizes", group: "Verification", label: "Batch sizes", kind: "integers",
    min: 1, default: [1, 3] },
  { key: "seed", group: "Verification", label: "Input seed", kind: "integer", min: 0, default: 0 },
  { key: "reference_timeout", group: "Verification", label: "Reference time limit (s)",
    kind: "number", min: 1, default: 300 },
  { key: "name", group: "Job", label: "Name", kind: "text", default: null,
    placeholder: "optional label; also makes a fresh conversion" },
];

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function numberInput(opt, step) {
  const input = el("input", { id: `opt-${opt.key}`, type: "number", step: opt.step ?? step,
                              value: opt.default ?? "", placeholder: opt.placeholder ?? "" });
  if (opt.min !== undefined) input.min = opt.min;
  if (opt.max !== undefined) input.max = opt.max;
  return input;
}

/** Number parsing with the option's bounds; `null` for an empty field. */
function checkedNumber(opt, text, integer) {
  if (text.trim() === "") return null;
  const value = Number(text);
  const what = integer ? "an integer" : "a number";
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new ApiError(`${opt.label} must be ${what}, got ${JSON.stringify(text)}`);
  }
  if ((opt.min !== undefined && value < opt.min) || (opt.max !== undefined && value > opt.max)) {
    const range = opt.max === undefined ? `at least ${opt.min}` : `from ${opt.min} to ${opt.max}`;
    throw new ApiError(`${opt.label} must be ${range}, got ${value}`);
  }
  return value;
}

/** Per kind: `control(opt)` makes the form control(s), `read(opt)` the value (null = unset). */
const KINDS = {
  targets: {
    control: (opt) => el("span", { className: "choices" }, ...opt.choices.map(([value, label]) =>
      el("label", {}, el("input", { type: "checkbox", name: "target", value,
                                    checked: opt.default.includes(value) }), ` ${label}`))),
    read: (opt) => {
      const targets = [...document.querySelectorAll("input[name=target]:checked")].map((c) => c.value);
      if (!targets.length) throw new ApiError("choose at least one target");
      return targets;
    },
    labelled: true,
  },
  choice: {
    control: (opt) => el("select", { id: `opt-${opt.key}` },
      ...(opt.none ? [el("option", { value: "", textContent: opt.none })] : []),
      ...opt.choices.map((c) => el("option", { value: c, textContent: c, selected: c === opt.default }))),
    read: (opt) => $(`#opt-${opt.key}`).value || null,
  },
  flag: {
    control: (opt) => el("select", { id: `opt-${opt.key}` },
      el("option", { value: "", textContent: opt.none }),
      el("option", { value: "true", textContent: "yes" }),
      el("option", { value: "false", textContent: "no" })),
    read: (opt) => ({ true: true, false: false })[$(`#opt-${opt.key}`).value] ?? null,
  },
  number: {
    control: (opt) => numberInput(opt, "any"),
    read: (opt) => checkedNumber(opt, $(`#opt-${opt.key}`).value, false),
  },
  integer: {
    control: (opt) => numberInput(opt, 1),
    read: (opt) => checkedNumber(opt, $(`#opt-${opt.key}`).value, true),
  },
  integers: {
    control: (opt) => el("input", { id: `opt-${opt.key}`, type: "text", inputMode: "numeric",
                                    value: opt.default.join(", "), placeholder: "e.g. 1, 3" }),
    read: (opt) => {
      const text = $(`#opt-${opt.key}`).value;
      const values = text.split(/[\s,]+/).filter(Boolean).map((t) => checkedNumber(opt, t, true));
      if (!values.length) throw new ApiError(`${opt.label}: give at least one`);
      return values;
    },
  },
  text: {
    control: (opt) => el("input", { id: `opt-${opt.key}`, type: "text", placeholder: opt.placeholder ?? "" }),
    read: (opt) => $(`#opt-${opt.key}`).value.trim() || null,
  },
};

/** The option fieldsets, one per group, in the order of OPTIONS. */
function buildOptionsForm() {
  const groups = new Map();
  for (const opt of OPTIONS) {
    if (!groups.has(opt.group)) groups.set(opt.group, []);
    const control = KINDS[opt.kind].control(opt);
    const title = `${opt.key}, default ${JSON.stringify(opt.default)}`;
    groups.get(opt.group).push(KINDS[opt.kind].labelled ? control
      : el("label", { title }, `${opt.label} `, control));
  }
  $("#options").replaceChildren(...[...groups].map(([group, controls]) =>
    el("fieldset", {}, el("legend", { textContent: group }), ...controls)));
}

/** The `options` JSON of the form: the values that differ from the API's defaults. */
function readOptions() {
  const options = {};
  for (const opt of OPTIONS) {
    const value = KINDS[opt.kind].read(opt);
    if (value !== null && !same(value, opt.default)) options[opt.key] = value;
  }
  return options;
}

// --- the same submission from a shell -------------------------------------------------------------

/** `text` quoted for a POSIX shell when it needs it. */
function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/** A curl and a `jaxport submit` line doing what Convert does with the form as it is now. */
function showCommands() {
  let options;
  try {
    options = readOptions();
  } catch (err) {
    const text = `(${err.message})`;
    $("#cmd-curl").textContent = $("#cmd-cli").textContent = text;
    return;
  }
  const file = chosenFile()?.name ?? "model.keras";
  const server = window.location.origin;
  const keyed = Boolean(localStorage.getItem(KEY_STORAGE));
  const json = JSON.stringify(options);
  $("#cmd-curl").textContent = ["curl -s", keyed ? '-H "Authorization: Bearer $JAXPORT_API_KEY"' : "",
    `-F file=@${shellQuote(file)}`, json === "{}" ? "" : `-F ${shellQuote(`options=${json}`)}`,
    `${server}/v1/jobs`].filter(Boolean).join(" ");
  const { targets, ...rest } = options;
  $("#cmd-cli").textContent = ["jaxport submit", shellQuote(file), `--server ${server}`,
    targets ? `--targets ${targets.join(",")}` : "",
    Object.keys(rest).length ? `--options ${shellQuote(JSON.stringify(rest))}` : "",
    "--wait"].filter(Boolean).join(" ");
}

/** Copy the text of the element the button names; where the clipboard is refused, select it. */
async function copyText(button) {
  const code = $(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied";
  } catch {
    window.getSelection().selectAllChildren(code);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}
