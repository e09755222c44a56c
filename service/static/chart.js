// jaxport web UI, the chart of a job: artifact bytes and verify error (max err ÷ scale) per
// target, as two panels of horizontal bars in one hand-written inline SVG.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 520, label: 90, value: 84, bar: 16, gap: 6, title: 22 };
const ERR_DECADES = [-9, 0]; // the error panel's log axis: 1e-9 .. 1

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** One panel at height `y`: a title, then per row its label, a bar of `fraction` of the
 * width (0..1) and the value's text. Answers the panel and its height. */
function barPanel(title, rows, y, kind) {
  const span = CHART.width - CHART.label - CHART.value;
  const panel = svg("g", { class: `panel panel-${kind}`, transform: `translate(0 ${y})` },
    svg("text", { x: 0, y: 15, class: "chart-title" }, title));
  rows.forEach((row, i) => {
    const top = CHART.title + i * (CHART.bar + CHART.gap);
    const width = Math.max(0, Math.min(1, row.fraction)) * span;
    const bar = svg("rect", { x: CHART.label, y: top, width: width.toFixed(1), height: CHART.bar,
                              rx: 2, class: `bar bar-${row.status}` },
      svg("title", {}, `${row.label}: ${row.text}`));
    bar.dataset.target = row.label;
    bar.dataset.value = String(row.value);
    panel.append(
      svg("text", { x: CHART.label - 6, y: top + 12, "text-anchor": "end" }, row.label),
      bar,
      svg("text", { x: CHART.label + width + 4, y: top + 12, class: "chart-value" }, row.text));
  });
  return [panel, CHART.title + rows.length * (CHART.bar + CHART.gap)];
}

/** The chart of `targets` ([[name, target record], ...]): sizes of the built artifacts on a
 * linear axis, verify errors on a log axis (1e-9 .. 1). */
function sizeAndErrorChart(targets) {
  const built = targets.filter(([, t]) => t.bytes);
  const most = Math.max(...built.map(([, t]) => t.bytes));
  const sizes = built.map(([name, t]) => ({ label: name, value: t.bytes, status: t.status,
                                            fraction: t.bytes / most, text: fmtBytes(t.bytes) }));
  const [low, high] = ERR_DECADES;
  const checked = targets.filter(([, t]) => typeof t.parity?.max_rel_err === "number");
  const errors = checked.map(([name, t]) => {
    const e = t.parity.max_rel_err;
    return { label: name, value: e, status: t.parity.passed ? "ok" : "failed",
             fraction: e > 0 ? (Math.log10(e) - low) / (high - low) : 0, text: fmtErr(e) };
  });
  const [sizePanel, sizeHeight] = barPanel("Artifact size", sizes, 0, "bytes");
  const [errPanel, errHeight] = barPanel("Verify error: max err ÷ scale (log, 1e-9 to 1)", errors,
                                         sizeHeight + 8, "error");
  const height = sizeHeight + 8 + errHeight;
  const chart = svg("svg", { viewBox: `0 0 ${CHART.width} ${height}`, width: CHART.width, height,
                             role: "img", class: "chart" },
    svg("title", {}, `Artifact sizes: ${sizes.map((r) => `${r.label} ${r.text}`).join(", ")}. `
                     + `Verify errors: ${errors.map((r) => `${r.label} ${r.text}`).join(", ")}.`),
    sizePanel, errPanel);
  return chart;
}
