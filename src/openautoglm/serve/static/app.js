// Open-AutoGLM web UI: a little vanilla JavaScript on top of server-rendered pages.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
};
const fmt = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

async function api(path, options = {}) {
  const opts = { ...options, headers: { ...(options.headers || {}) } };
  if (opts.json !== undefined) {
    opts.body = JSON.stringify(opts.json);
    opts.headers["Content-Type"] = "application/json";
    delete opts.json;
  }
  const resp = await fetch(path, opts);
  const body = (resp.headers.get("content-type") || "").includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${resp.status}`;
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return body;
}

// A request that never reached the server (fetch's TypeError) or a gateway's answer: the link, not the request, failed.
const connectionLost = (err) => err instanceof TypeError || [502, 503, 504].includes(err.status);

function showConnection(ok) {
  const banner = $("#connection");
  if (banner) banner.hidden = ok;
  document.body.dataset.connection = ok ? "ok" : "lost";
}

// Poll `step` (an async function; it returns false when there is nothing more to watch) every `interval` ms.
// While the connection is down the page keeps what it shows, says so, and retries with backoff (up to `max` ms);
// other errors go to `onError` and polling goes on.
function live(step, { interval = 1000, max = 8000, onError = null } = {}) {
  let delay = interval, stopped = false;
  async function tick() {
    if (stopped) return;
    let again = true;
    try {
      again = (await step()) !== false;
      showConnection(true);
      delay = interval;
    } catch (err) {
      if (connectionLost(err)) {
        showConnection(false);
        delay = Math.min(max, delay * 2);
      } else if (onError) onError(err);
    }
    if (again && !stopped) setTimeout(tick, delay);
  }
  tick();
  return { stop() { stopped = true; } };
}

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ------------------------------------------------------------------ pipeline editor
function initEditor() {
  const yaml = $("#yaml"), gutter = $("#gutter"), status = $("#validation");
  let inputs = ["text"], labels = [];

  function renderGutter(badLine) {
    const n = yaml.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) =>
      el("span", i + 1 === badLine ? { class: "err", "data-line": i + 1 } : { "data-line": i + 1 }, i + 1)));
    gutter.scrollTop = yaml.scrollTop;
  }

  function renderInputs() {
    const box = $("#try-inputs");
    const old = {};
    box.querySelectorAll("textarea").forEach((t) => { old[t.dataset.field] = t.value; });
    box.replaceChildren(...inputs.map((f) => el("label", {}, `${f} `,
      el("textarea", { id: `try-${f}`, "data-field": f, rows: "3" }, old[f] || (f === "text" ? "A wonderful film with a great story." : "")))));
  }

  async function validate() {
    localStorage.setItem("openautoglm.yaml", yaml.value);
    try {
      const info = await api("/api/validate", { method: "POST", json: { yaml: yaml.value } });
      if (info.valid) {
        renderGutter(null);
        status.replaceChildren(el("span", { class: "ok" }, `valid · steps: ${info.steps.join(", ")} · inputs: ${info.inputs.join(", ") || "none"}` +
          (info.labels.length ? ` · labels: ${info.labels.join(", ")}` : "")));
        yaml.setAttribute("aria-invalid", "false");
        inputs = info.inputs.length ? info.inputs : ["text"];
        labels = info.labels;
        renderInputs();
      } else {
        const p = info.problems[0];
        renderGutter(p.line);
        yaml.setAttribute("aria-invalid", "true");
        status.replaceChildren(el("span", { class: "bad", id: "problem", "data-line": p.line ?? "" },
          `${p.line ? "line " + p.line + ": " : ""}${p.message}${p.field ? " [" + p.field + "]" : ""}${p.hint ? " — " + p.hint : ""}`));
      }
      return info.valid;
    } catch (err) {
      status.replaceChildren(el("span", { class: "bad" }, err.message));
      return false;
    }
  }

  const later = debounce(validate, 250);
  yaml.addEventListener("input", () => { renderGutter(null); later(); });
  yaml.addEventListener("scroll", () => { gutter.scrollTop = yaml.scrollTop; });
  const saved = localStorage.getItem("openautoglm.yaml");
  if (saved && !new URLSearchParams(location.search).has("fresh")) yaml.value = saved;
  renderGutter(null);
  renderInputs();
  validate();

  $("#open-pipeline").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    const p = await api(`/api/pipelines/${encodeURIComponent(e.target.value)}`);
    yaml.value = p.yaml;
    $("#save-name").value = p.name;
    validate();
  });

  $("#task-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {
      name: $("#form-name").value || "task",
      labels: $("#form-labels").value.split(",").map((s) => s.trim()).filter(Boolean),
      instruction: $("#form-instruction").value,
    };
    if ($("#form-model").value.trim()) body.model = $("#form-model").value.trim();
    try {
      const out = await api("/api/task-yaml", { method: "POST", json: body });
      yaml.value = out.yaml;
      $("#save-name").value = body.name;
      validate();
    } catch (err) {
      status.replaceChildren(el("span", { class: "bad" }, err.message));
    }
  });

  $("#save-btn").addEventListener("click", async () => {
    const name = $("#save-name").value.trim();
    try {
      await api(`/api/pipelines/${encodeURIComponent(name)}`, { method: "PUT", json: { yaml: yaml.value } });
      $("#save-status").textContent = `saved as ${name}`;
    } catch (err) {
      $("#save-status").textContent = err.message;
    }
  });

  $("#try-btn").addEventListener("click", async () => {
    const button = $("#try-btn");
    $("#try-error").textContent = "";
    const record = {};
    document.querySelectorAll("#try-inputs textarea").forEach((t) => { record[t.dataset.field] = t.value; });
    button.disabled = true;
    try {
      const out = await api("/api/try", { method: "POST", json: { yaml: yaml.value, inputs: record } });
      showTry(out);
    } catch (err) {
      $("#try-error").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });

  function showTry(out) {
    $("#try-result").hidden = false;
    $("#try-raw").textContent = JSON.stringify(out, null, 2);
    $("#try-latency").textContent = `${fmt(out.latency_ms, 0)} ms`;
    if (out.error) {
      $("#try-error").textContent = out.error;
    }
    const res = out.result || {};
    $("#try-label").textContent = res.label ?? res.text ?? JSON.stringify(res.output ?? res.value ?? res);
    $("#try-confidence").textContent = res.confidence !== undefined ? `(confidence ${fmt(res.confidence)})` : "";
    $("#try-method").textContent = res.method ? `method: ${res.method}` : "";
    const scores = res.scores || {};
    const top = res.label;
    $("#try-bars").replaceChildren(...Object.entries(scores).map(([label, p]) =>
      el("div", { class: "bar" + (label === top ? " top" : ""), "data-label": label },
        el("span", {}, label), el("div", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
        el("span", {}, `${(100 * p).toFixed(1)}%`))));
    const calls = out.calls || [];
    $("#try-prompt").textContent = calls.map((c, i) =>
      `── call ${i + 1}: ${c.kind}${c.step ? " (" + c.step + ")" : ""} · ${c.prompt_tokens} prompt tokens\n` +
      (c.rendered ?? (typeof c.prompt === "string" ? c.prompt : JSON.stringify(c.prompt, null, 2))) +
      (c.kind === "score" ? `\n── scored continuations: ${JSON.stringify(c.params.continuations)}` : "")).join("\n\n");
  }
}

// ------------------------------------------------------------------ runs list / start
function initRuns() {
  let upload = null;
  const fileInput = $("#file");

  async function pipelineInfo() {
    const choice = $("#pipeline").value;
    const yaml = choice === "__editor__" ? localStorage.getItem("openautoglm.yaml") : (await api(`/api/pipelines/${encodeURIComponent(choice)}`)).yaml;
    if (!yaml) throw new Error("the editor has no pipeline yet: write one on the Editor page, or choose a saved pipeline");
    const info = await api("/api/validate", { method: "POST", json: { yaml } });
    if (!info.valid) throw new Error(`the pipeline is invalid: line ${info.problems[0].line}: ${info.problems[0].message}`);
    return { yaml, info };
  }

  async function refreshColumns() {
    $("#run-error").textContent = "";
    if (!upload) return;
    try {
      const { info } = await pipelineInfo();
      const options = (selected) => upload.columns.map((c) => {
        const o = el("option", { value: c }, c);
        if (c === selected) o.selected = true;
        return o;
      });
      $("#column-choices").replaceChildren(...info.inputs.map((f) =>
        el("label", {}, `Column for input “${f}” `, el("select", { id: `col-${f}`, "data-field": f },
          ...options(upload.columns.includes(f) ? f : upload.columns[0])))));
      const labelSel = $("#label-col");
      const guess = upload.columns.find((c) => /^(label|gold|target|class|y)$/i.test(c)) || "";
      labelSel.replaceChildren(el("option", { value: "" }, "(none)"), ...options(guess));
      $("#start-btn").disabled = false;
    } catch (err) {
      $("#run-error").textContent = err.message;
      $("#start-btn").disabled = true;
    }
  }

  fileInput.addEventListener("change", async () => {
    $("#run-error").textContent = "";
    $("#start-btn").disabled = true;
    const file = fileInput.files[0];
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    try {
      upload = await api("/api/uploads", { method: "POST", body: data });
      $("#upload-info").textContent = `${upload.filename}: ${upload.rows} records · columns: ${upload.columns.join(", ")}`;
      await refreshColumns();
    } catch (err) {
      upload = null;
      $("#run-error").textContent = err.message;
    }
  });
  $("#pipeline").addEventListener("change", refreshColumns);

  $("#run-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#start-btn").disabled = true;
    try {
      const choice = $("#pipeline").value;
      const body = { upload_id: upload.upload_id, columns: {}, label_column: $("#label-col").value || null };
      if (choice === "__editor__") body.yaml = (await pipelineInfo()).yaml; else body.pipeline = choice;
      document.querySelectorAll("#column-choices select").forEach((s) => { body.columns[s.dataset.field] = s.value; });
      const run = await api("/api/runs", { method: "POST", json: body });
      location.href = `/runs/${run.run_id}`;
    } catch (err) {
      $("#run-error").textContent = err.message;
      $("#start-btn").disabled = false;
    }
  });

  if (document.querySelector('#runs-table tr[data-status="running"], #runs-table tr[data-status="queued"]')) {
    setTimeout(() => location.reload(), 3000);
  }
}

// ------------------------------------------------------------------ charts (uPlot, vendored in /static/vendor/uplot)
const CHART_HEIGHT = 240;
const COLORS = { p50: "#2f6fde", p95: "#e0a100", p99: "#c0362c", grey: "#8a94a6" };
const charts = {};
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];

// One uPlot per element, created on first use and fed new data afterwards (the run page polls).
// `x` and `y` are the axis titles, with units; `series` are uPlot series options after x; the legend
// lists the series by name (no live values: the page is read, not hovered).
function plot(id, { x, y, series, xRange = null, yRange = fromZero }, data) {
  if (charts[id]) {
    charts[id].setData(data);
    return charts[id];
  }
  const box = $(`#${id}`);
  const opts = {
    width: Math.max(320, box.clientWidth), height: CHART_HEIGHT,
    scales: { x: { time: false, ...(xRange ? { range: xRange } : {}) }, y: { range: yRange } },
    axes: [{ label: x, labelSize: 24 }, { label: y, labelSize: 24, size: 56 }],
    series: [{ label: x }, ...series],
    legend: { live: false },
  };
  charts[id] = new uPlot(opts, data, box);
  return charts[id];
}

window.addEventListener("resize", debounce(() => {
  for (const [id, chart] of Object.entries(charts)) chart.setSize({ width: Math.max(320, $(`#${id}`).clientWidth), height: CHART_HEIGHT });
}, 150));

function calibrationChart(bins) {
  const centers = bins.map((b) => (b.lo + b.hi) / 2);
  plot("calibration", {
    x: "confidence (probability)", y: "accuracy (fraction correct)", xRange: [0, 1], yRange: [0, 1],
    series: [
      { label: "accuracy per bin", stroke: COLORS.p50, fill: COLORS.p50 + "b0", paths: uPlot.paths.bars({ size: [0.9, Infinity] }), points: { show: false } },
      { label: "perfect calibration", stroke: COLORS.grey, dash: [5, 4], width: 1.5, points: { show: false } },
    ],
  }, [centers, bins.map((b) => (b.count ? b.accuracy : null)), centers]);
}

function throughputChart(series) {
  plot("throughput-chart", {
    x: "time since start (s)", y: "throughput (records/s)",
    series: [{ label: "records/s per chunk", stroke: COLORS.p50, width: 2, points: { show: true, size: 7, fill: COLORS.p50 } }],
  }, [series.map((s) => s.t), series.map((s) => s.records_per_s ?? null)]);
}

// P50 is drawn widest and P99 dashed on top (points as nested discs), so all three stay visible
// where they coincide, as they do when a time window holds one chunk.
function latencyChart(windows) {
  const line = (label, color, width, size, dash) =>
    ({ label, stroke: color, width, dash, points: { show: true, size, width: 0, fill: color } });
  plot("latency-chart", {
    x: "time since start (s)", y: "latency per record (ms)",
    series: [line("P50", COLORS.p50, 7, 18), line("P95", COLORS.p95, 3.5, 12), line("P99", COLORS.p99, 1.5, 7, [6, 4])],
  }, [windows.map((w) => w.t), windows.map((w) => w.p50_ms), windows.map((w) => w.p95_ms), windows.map((w) => w.p99_ms)]);
}

// ------------------------------------------------------------------ run detail
function initRun() {
  const runId = $("#run").dataset.run;
  let finished = false;

  async function poll() {
    const run = await api(`/api/runs/${runId}`);
    $("#run-status").textContent = run.status;
    $("#run-progress").max = run.total;
    $("#run-progress").value = run.done + run.failed;
    $("#run-count").textContent = `${run.done + run.failed}/${run.total}` + (run.failed ? ` (${run.failed} failed)` : "");
    $("#run-error").textContent = run.error || "";
    const active = run.status === "queued" || run.status === "running";
    $("#cancel-btn").hidden = !active;
    $("#resume-btn").hidden = !["cancelled", "interrupted", "failed", "done-with-errors"].includes(run.status);
    await report();
    finished = !active;
    document.body.dataset.runFinished = finished ? "1" : "0";
    return active;
  }
  const watch = () => live(poll, { onError: (err) => { $("#run-error").textContent = err.message; } });

  async function report() {
    const rep = await api(`/api/runs/${runId}/report`);
    $("#report").hidden = false;
    const q = rep.quality;
    if (q && !q.unavailable) {
      $("#m-accuracy").textContent = fmt(q.accuracy);
      $("#m-f1").textContent = fmt(q.macro_f1);
      $("#m-ece").textContent = q.calibration ? fmt(q.calibration.ece) : "–";
      const cm = q.confusion_matrix;
      $("#confusion").replaceChildren(
        el("tr", {}, el("th", {}, "gold \\ predicted"), ...cm.columns.map((c) => el("th", {}, c))),
        ...cm.rows.map((r, i) => el("tr", {}, el("th", {}, r), ...cm.matrix[i].map((v, j) =>
          el("td", cm.columns[j] === r ? { class: "diag" } : {}, v)))));
      if (q.calibration) calibrationChart(q.calibration.bins);
    } else if (q && q.unavailable) {
      $("#m-accuracy").textContent = "n/a";
    }
    const t = rep.timing;
    $("#m-throughput").textContent = fmt(t.records_per_s, 2);
    $("#m-latency").textContent = t.p50_ms === null ? "–" : `${fmt(t.p50_ms, 0)} / ${fmt(t.p95_ms, 0)} / ${fmt(t.p99_ms, 0)}`;
    throughputChart(t.series);
    latencyChart(t.windows || []);
    await records();
  }

  async function records() {
    const filter = $("#record-filter").value;
    const out = await api(`/api/runs/${runId}/records?filter=${filter}&limit=500`);
    $("#record-total").textContent = `${out.total} record(s)`;
    $("#records tbody").replaceChildren(...out.records.map((r) =>
      el("tr", { class: r.error ? "failed" : r.correct === false ? "wrong" : "", "data-idx": r.idx },
        el("td", {}, r.idx), el("td", { class: "clip" }, r.text), el("td", {}, r.gold ?? ""),
        el("td", {}, r.error ? el("span", { class: "error" }, r.error) : (r.predicted ?? "")), el("td", {}, fmt(r.confidence)))));
  }

  $("#record-filter").addEventListener("change", records);
  $("#cancel-btn").addEventListener("click", async () => {
    await api(`/api/runs/${runId}/cancel`, { method: "POST" });
  });
  $("#resume-btn").addEventListener("click", async () => {
    await api(`/api/runs/${runId}/resume`, { method: "POST" });
    if (finished) { finished = false; watch(); }
  });
  watch();
}

// ------------------------------------------------------------------ login
function initLogin() {
  $("#login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    document.cookie = `oag_key=${encodeURIComponent($("#api-key").value)}; path=/; SameSite=Strict`;
    location.href = e.target.dataset.next || "/";
  });
}

// Each page's script; the workbench's files (builder.js, compare.js, ...) add theirs, loaded after this one.
const PAGES = { editor: initEditor, runs: initRuns, run: initRun, login: initLogin };

document.addEventListener("DOMContentLoaded", () => {
  PAGES[document.body.dataset.page]?.();
});
