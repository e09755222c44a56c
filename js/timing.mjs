// Latency figures of timed runs, shared by the TF.js runner (Node) and the LiteRT.js page
// (Chromium, served by run_litertjs.mjs): `times` are milliseconds, one per timed run.

export function summarize(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { runs: sorted.length, median_ms: median, min_ms: sorted[0], max_ms: sorted[sorted.length - 1] };
}
