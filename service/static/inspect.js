// jaxport web UI, the inspect preview: as soon as a file is chosen, POST /v1/inspect and show
// what the archive holds and the verdict per target, before the user presses Convert.
// Uses api(), el(), $ and guarded() of app.js.
"use strict";

let inspectSeq = 0;

/** Inspect the chosen file; a newer choice wins over an answer still on its way. */
async function inspectChosenFile() {
  const file = $("#file").files[0];
  const box = $("#inspect");
  if (!file) {
    box.hidden = true;
    return;
  }
  const seq = ++inspectSeq;
  box.hidden = false;
  $("#inspect-state").textContent = `inspecting ${file.name}…`;
  $("#inspect-verdict").replaceChildren();
  $("#inspect-functions").replaceChildren();
  const form = new FormData();
  form.append("file", file, file.name);
  let report;
  try {
    report = await (await api("/v1/inspect", { method: "POST", body: form })).json();
  } catch (err) {
    if (seq === inspectSeq) $("#inspect-state").textContent = "";
    throw err;
  }
  if (seq !== inspectSeq) return;
  renderInspection(report);
}

function renderInspection(report) {
  const models = Object.entries(report.models)
    .map(([name, m]) => `${name}: ${m.parameters.toLocaleString("en")} parameters`).join(", ");
  $("#inspect-state").textContent = `${report.archive} (${report.seconds} s) · ${models}`;
  $("#inspect-verdict").replaceChildren(...Object.entries(report.verdict).map(([target, v]) =>
    el("li", { className: v.ok ? (v.path === "orbax" && target !== "savedmodel" ? "warning" : "status-ok")
                                : "failure",
               textContent: `${target}: ${v.message}` })));
  $("#inspect-functions").replaceChildren(...Object.entries(report.functions).map(([name, fn]) => {
    const spec = (s) => `${s.dtype}[${s.shape.join(",")}]`;
    const io = [...Object.entries(fn.inputs).map(([k, s]) => `in ${k}: ${spec(s)}`),
                ...Object.entries(fn.outputs).map(([k, s]) => `out ${k}: ${spec(s)}`)];
    const rows = Object.entries(fn.primitives).map(([prim, e]) => el("tr", {},
      el("td", { textContent: prim }), el("td", { textContent: String(e.count) }),
      el("td", { textContent: e.rule ?? "none" }),
      el("td", { textContent: e.targets.tflite }), el("td", { textContent: e.targets.tfjs })));
    return el("details", {},
      el("summary", { textContent: `${name} — ${io.join(", ")}` }),
      el("table", { className: "primitives" },
        el("thead", {}, el("tr", {}, ...["Primitive", "Count", "Rule", "TFLite", "TF.js"]
          .map((h) => el("th", { textContent: h })))),
        el("tbody", {}, ...rows)));
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#file").addEventListener("change", guarded(inspectChosenFile));
});
