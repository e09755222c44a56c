// jaxport web UI, the jobs: the paged job list (GET /v1/jobs?limit&cursor) with cancel/delete,
// and the selected job followed live on its SSE stream (GET /v1/jobs/{id}/events, read with
// fetch so the API key can be sent), polling only when the stream fails. Uses app.js, chart.js
// (sizeAndErrorChart) and tryout.js (showTryout).
"use strict";

const TERMINAL = new Set(["succeeded", "partial", "failed", "canceled"]);
const POLL_MS = 1000;

// --- the job list -------------------------------------------------------------------------------

let selectedJob = null;
// cursors[i] is the cursor of page i (null: the newest); the last page shown is cursors.at(-1).
let cursors = [null];
let nextCursor = null;

function setUpJobList() {
  $("#refresh").addEventListener("click", guarded(refreshJobs));
  $("#page-size").addEventListener("change", guarded(showFirstPage));
  $("#page-older").addEventListener("click", guarded(() => {
    cursors.push(nextCursor);
    return refreshJobs();
  }));
  $("#page-newer").addEventListener("click", guarded(() => {
    cursors.pop();
    return refreshJobs();
  }));
  guarded(refreshJobs)();
}

function showFirstPage() {
  cursors = [null];
  return refreshJobs();
}

/** Load the current page of the list. */
async function refreshJobs() {
  const params = new URLSearchParams({ limit: $("#page-size").value });
  if (cursors.at(-1)) params.set("cursor", cursors.at(-1));
  const page = await (await api(`/v1/jobs?${params}`)).json();
  nextCursor = page.next_cursor;
  $("#page-older").disabled = !nextCursor;
  $("#page-newer").disabled = cursors.length === 1;
  const first = (cursors.length - 1) * Number($("#page-size").value);
  $("#page-state").textContent = page.jobs.length
    ? `jobs ${first + 1}–${first + page.jobs.length}` : "no jobs";
  $("#jobs tbody").replaceChildren(...page.jobs.map(jobRow));
}

function jobRow(job) {
  const open = el("button", { type: "button", className: "link", textContent: job.id,
                              onclick: (event) => {
                                event.stopPropagation();
                                selectJob(job.id);
                              } });
  open.setAttribute("aria-label", `Show job ${job.id}`);
  const live = !TERMINAL.has(job.status);
  const action = el("button", { type: "button", className: live ? "cancel" : "delete",
                                textContent: live ? "Cancel" : "Delete",
                                onclick: guarded((event) => removeJob(event, job.id)) });
  action.setAttribute("aria-label", `${live ? "Cancel" : "Delete"} job ${job.id}`);
  const row = el("tr", { onclick: () => selectJob(job.id) },
    el("td", { textContent: job.created_at.replace("T", " ").slice(0, 19) }),
    el("td", { textContent: job.upload.filename ?? "" }),
    el("td", { textContent: job.name ?? "" }),
    el("td", { textContent: job.status, className: `status status-${job.status}` }),
    el("td", {}, open),
    el("td", {}, action));
  row.dataset.job = job.id;
  row.classList.toggle("selected", job.id === selectedJob);
  return row;
}

/** DELETE /v1/jobs/{id}: cancels a queued or running job, deletes a finished one. */
async function removeJob(event, id) {
  event.stopPropagation();
  clearError();
  await api(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (id === selectedJob && event.target.classList.contains("delete")) {
    stopWatching();
    selectedJob = null;
    $("#job").hidden = true;
  }
  await refreshJobs();
}

/** Keep the list's row of `job` in step with what the stream says. */
function updateRow(job) {
  const row = document.querySelector(`#jobs tbody tr[data-job="${job.id}"]`);
  if (row) row.replaceWith(jobRow(job));
}

// --- following the selected job -----------------------------------------------------------------

let watching = null; // {id, abort, timeline: [{stage, at}], feed}

function stopWatching() {
  if (!watching) return;
  watching.abort.abort();
  clearTimeout(watching.timer);
  watching = null;
}

/** Show job `id` and follow it until it ends: its SSE stream, else polling. */
function selectJob(id) {
  stopWatching();
  selectedJob = id;
  for (const row of document.querySelectorAll("#jobs tbody tr")) {
    row.classList.toggle("selected", row.dataset.job === id);
  }
  const watch = { id, abort: new AbortController(), timeline: [], timer: null, feed: "" };
  watching = watch;
  $("#tryout-functions").replaceChildren();
  guarded(() => follow(watch))();
}

async function follow(watch) {
  let last = null;
  const onJob = (job) => {
    if (watching !== watch) return;
    last = job;
    try {
      showJob(watch, job);
    } catch (err) { // a bug of this page, not of the stream: say so and keep following
      showError(err);
    }
  };
  try {
    setFeed(watch, "live (server-sent events)");
    await streamEvents(watch.id, watch.abort.signal, onJob);
  } catch (err) {
    if (watch.abort.signal.aborted) return;
    if (err instanceof ApiError && err.status === 404) throw err;
    setFeed(watch, `the event stream failed (${err.message}): polling`);
  }
  if (watching !== watch || (last && TERMINAL.has(last.status))) return;
  if (!watch.feed.startsWith("the event stream failed")) setFeed(watch, "the event stream ended early: polling");
  await poll(watch, onJob);
}

function setFeed(watch, text) {
  watch.feed = text;
  $("#job-feed").textContent = `· ${text}`;
}

/** Read `event: job` messages of the job's stream until the server ends it. */
async function streamEvents(id, signal, onJob) {
  const response = await api(`/v1/jobs/${encodeURIComponent(id)}/events`,
                             { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (message.event === "job" && message.data) onJob(JSON.parse(message.data));
    }
  }
}

/** One SSE message: its `event` name and `data` lines (comment lines, `: keepalive`, ignored). */
function parseEvent(block) {
  const message = { event: "message", data: "" };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") message.event = value;
    if (field === "data") message.data += (message.data ? "\n" : "") + value;
  }
  return message;
}

/** GET the job about once a second until it ends (the fallback when the stream fails). */
async function poll(watch, onJob) {
  for (;;) {
    const job = await (await api(`/v1/jobs/${encodeURIComponent(watch.id)}`,
                                 { signal: watch.abort.signal })).json();
    onJob(job);
    if (TERMINAL.has(job.status) || watching !== watch) return;
    await new Promise((resolve) => { watch.timer = setTimeout(resolve, POLL_MS); });
  }
}

// --- the job ------------------------------------------------------------------------------------

function showJob(watch, job) {
  const last = watch.timeline.at(-1);
  if (last?.stage !== job.stage) watch.timeline.push({ stage: job.stage, at: performance.now() });
  $("#job").hidden = false;
  $("#job-id").textContent = job.id;
  $("#job-status").textContent = job.status;
  $("#job-status").className = `status-${job.status}`;
  $("#job-stage").textContent = job.stage;
  $("#job-message").textContent = job.message ? `· ${job.message}` : "";
  $("#job-progress").value = job.progress;
  const jobError = $("#job-error");
  jobError.hidden = !job.error;
  jobError.replaceChildren(...(job.error ? errorNodes(job.error) : []));
  const warnings = job.warnings || [];
  $("#job-warnings").hidden = !warnings.length;
  $("#job-warnings").replaceChildren(...warnings.map((w) => el("li", { textContent: `warning: ${w}` })));
  const done = TERMINAL.has(job.status);
  showTimeline(watch.timeline, done);
  const timings = Object.entries(job.timings || {});
  $("#timings").textContent = timings.length
    ? `time in the engine: ${timings.map(([stage, s]) => `${stage} ${seconds(s)}`).join(", ")}` : "";
  const requested = Object.entries(job.targets).filter(([, t]) => t.reason !== "not requested");
  $("#cards").replaceChildren(...requested.map(([name, t]) => targetCard(name, t)));
  $("#chart").replaceChildren(...(requested.some(([, t]) => t.bytes) ? [sizeAndErrorChart(requested)] : []));
  $("#artifacts").replaceChildren(...job.artifacts.map((a) => el("li", {},
    el("button", { type: "button", textContent: `Download ${a.name}`,
                   onclick: guarded(() => download(a)) }),
    ` ${a.bytes.toLocaleString("en")} bytes`)));
  updateRow(job);
  if (done) {
    showTryout(job);
    guarded(refreshJobs)();
  }
}

/** The stages the stream went through, with the seconds each took as seen from this page. */
function showTimeline(timeline, done) {
  const now = performance.now();
  $("#timeline").replaceChildren(...timeline.map((entry, i) => {
    const end = timeline[i + 1]?.at ?? (done ? entry.at : now);
    const current = !done && i === timeline.length - 1;
    const item = el("li", {}, el("span", { className: "stage", textContent: entry.stage }),
      el("span", { className: "seconds",
                   textContent: i === timeline.length - 1 && done ? "" : `${((end - entry.at) / 1000).toFixed(1)} s${current ? " …" : ""}` }));
    item.dataset.stage = entry.stage;
    return item;
  }));
}

function errorNodes(error) {
  const code = error.code ? ` [${error.code}]` : "";
  const stage = error.stage ? ` (stage ${error.stage})` : "";
  return [el("span", { textContent: `${error.message}${code}${stage}` }),
          ...(error.hint ? [el("span", { className: "hint", textContent: ` hint: ${error.hint}` })] : [])];
}

const fmtBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);
const seconds = (s) => (typeof s === "number" ? `${s.toFixed(1)} s` : "—");
/** A quantized output's SQNR (null: no noise at all). */
const sqnrText = (db) => (db === undefined ? "" : db === null ? "∞ dB" : `${db.toFixed(1)} dB`);
const fmtErr = (e) => (e === null || e === undefined ? "—" : Number(e).toExponential(2));

/** One target: status, source, bytes, seconds, parity per output, its error and warnings. */
function targetCard(name, t) {
  const facts = [["status", t.status], ["source", t.source ?? "—"],
                 ["bytes", t.bytes ? fmtBytes(t.bytes) : "—"],
                 ["build", seconds(t.seconds)], ["verify", seconds(t.verify_seconds)]];
  if (t.quantize) facts.push(["quantized", t.quantize]);
  const card = el("article", { className: `card status-border-${t.status}` },
    el("h4", {}, el("span", { textContent: name }),
       el("span", { className: `badge status-${t.status}`, textContent: t.status })),
    el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", { textContent: k }),
                                               el("dd", { textContent: String(v), className: `fact-${k}` })])));
  card.dataset.target = name;
  if (t.reason) card.append(el("p", { className: "muted", textContent: t.reason }));
  if (t.parity) card.append(parityTable(t.parity));
  if (t.error) card.append(el("p", { className: "failure" }, ...errorNodes(t.error)));
  for (const w of t.warnings ?? []) card.append(el("p", { className: "warning", textContent: `warning: ${w}` }));
  return card;
}

function parityTable(parity) {
  const rule = `${parity.rule ?? "scale"} rule, atol ${parity.atol}, rtol ${parity.rtol}, batch sizes ${(parity.batch_sizes ?? []).join(", ")}`;
  const outputs = Object.entries(parity.outputs ?? {});
  const quantized = outputs.some(([, o]) => o.sqnr_db !== undefined);
  const rows = outputs.map(([output, o]) => {
    const row = el("tr", {},
      el("td", { textContent: output }),
      el("td", { textContent: o.passed ? "yes" : "no", className: o.passed ? "status-ok" : "failure" }),
      el("td", { textContent: fmtErr(o.rel_err) }),
      el("td", { textContent: fmtErr(o.max_abs_err) }),
      ...(quantized ? [el("td", { textContent: sqnrText(o.sqnr_db) })] : []));
    row.title = o.failure ?? "";
    return row;
  });
  const heads = ["Output", "Passed", "Max err ÷ scale", "Max abs err", ...(quantized ? ["SQNR"] : [])];
  return el("div", { className: "parity" },
    el("p", { className: parity.passed ? "status-ok" : "failure",
              textContent: `parity ${parity.passed ? "passed" : "failed"}: ${rule}` }),
    el("table", {},
      el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { textContent: h })))),
      el("tbody", {}, ...rows)));
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
