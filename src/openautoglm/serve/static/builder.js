// Visual pipeline builder: Drawflow (vendored) draws and edits the graph; the server converts
// graph <-> YAML (/api/builder/yaml, /api/builder/graph) and validates. Uses $, el, api, live from app.js.
"use strict";

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const STORE_KEY = "openautoglm.yaml", POS_KEY = "openautoglm.builder.positions";

function initBuilder() {
  const box = $("#drawflow"), yaml = $("#yaml"), gutter = $("#gutter"), status = $("#validation");
  const editor = new Drawflow(box);
  editor.reroute = false;
  editor.draggable_inputs = false;  // typing or selecting text in a node's fields does not drag it
  editor.start();
  const meta = new Map();       // node id -> { kind, extra }: what is not a plain string field
  let recordId = null, building = false, options = { calls: [], strategies: ["direct"], pipelines: [] };
  let pipelineMeta = {}, order = [], inputs = ["text"], runUpload = null, form = "auto";
  // every edit, on either side, bumps `seq`; an answer to a request sent before the latest edit is dropped
  let seq = 0, version = 0;
  const touch = () => ++seq;
  const settled = () => { document.body.dataset.graphVersion = String(++version); };
  const positions = JSON.parse(localStorage.getItem(POS_KEY) || "{}");

  // -------------------------------------------------------------- nodes
  const node = (id) => editor.getNodeFromId(id);
  const stepNodes = () => Object.values(editor.export().drawflow.Home.data).filter((n) => n.id !== recordId);
  const nodeEl = (id) => document.getElementById(`node-${id}`);
  const choices = (values, current, note) => [...new Set([...(current ? [current] : []), ...values])]
    .map((v) => `<option value="${esc(v)}">${esc(v)}${values.includes(v) ? "" : esc(note)}</option>`).join("");

  function stepHTML(kind, data) {
    const head = `<div class="node-title"><span class="kind">${kind === "pipeline" ? "sub-pipeline" : kind}</span>` +
      `<input df-name class="node-name" aria-label="step name"></div>`;
    let body = "";
    if (kind === "task") {
      body = `<label>template <textarea df-template rows="2" aria-label="template"></textarea></label>` +
        `<label>labels <input df-labels placeholder="a, b, c (empty: text answer)" aria-label="labels"></label>` +
        `<details><summary>strategy, model, JSON schema</summary>` +
        `<label>strategy <select df-strategy aria-label="strategy">${choices(options.strategies, data.strategy, " (unknown)")}</select></label>` +
        `<label>model <input df-model placeholder="(served model)" aria-label="model"></label>` +
        `<label>JSON schema <textarea df-schema_text rows="3" aria-label="schema"></textarea></label></details>`;
    } else if (kind === "call") {
      body = `<label>callable <select df-call aria-label="callable">${choices(options.calls, data.call, " (not allowed)")}</select></label>`;
    } else {
      body = `<label>pipeline <select df-pipeline aria-label="sub-pipeline">${choices(options.pipelines, data.pipeline, " (not saved)")}</select></label>`;
    }
    return head + body + `<label>inputs <textarea df-inputs rows="2" placeholder="variable: step.field" aria-label="inputs"></textarea></label>` +
      `<div class="node-problem"></div><div class="node-output"></div>`;
  }

  function addStep(step, pos) {
    const data = {
      name: step.name, template: step.template ?? "", labels: (step.labels || []).join(", "),
      strategy: step.strategy || "direct", model: step.model || "", schema_text: step.schema_text || "",
      call: step.call || (step.kind === "call" ? options.calls[0] || "" : ""),
      pipeline: step.pipeline || (step.kind === "pipeline" ? options.pipelines[0] || "" : ""),
      inputs: Object.entries(step.inputs || {}).map(([k, v]) => `${k}: ${v}`).join("\n"),
    };
    const id = editor.addNode(step.kind, 1, 1, pos.x, pos.y, `step ${step.kind}`, data, stepHTML(step.kind, data));
    meta.set(id, { kind: step.kind, extra: step.extra || {}, name: step.name });
    return id;
  }

  function addRecord(fields) {
    recordId = editor.addNode("record", 0, 1, 20, 40, "record", {}, `<div class="node-title"><span class="kind">record</span> input fields</div><div class="record-fields"></div>`);
    showFields(fields);
  }
  function showFields(fields) {
    const box = nodeEl(recordId)?.querySelector(".record-fields");
    if (box) box.replaceChildren(...fields.map((f) => el("code", {}, f)));
  }

  // -------------------------------------------------------------- graph <-> model
  const splitLabels = (s) => String(s || "").split(",").map((x) => x.trim()).filter(Boolean);
  function parseInputs(text) {
    const out = {};
    for (const line of String(text || "").split("\n")) {
      const m = line.match(/^\s*([A-Za-z_]\w*)\s*:\s*(\S.*?)\s*$/);
      if (m) out[m[1]] = m[2];
    }
    return out;
  }
  const formatInputs = (map) => Object.entries(map).map(([k, v]) => `${k}: ${v}`).join("\n");
  const sources = (n) => (n.inputs.input_1?.connections || []).map((c) => Number(c.node));

  // steps in an order where each comes after the steps wired into it (ties: the previous order, then left to right)
  function topo(nodes) {
    const rank = (n) => [order.includes(n.id) ? order.indexOf(n.id) : 1e9, n.pos_x, n.id];
    const cmp = (a, b) => { const ra = rank(a), rb = rank(b); return ra[0] - rb[0] || ra[1] - rb[1] || ra[2] - rb[2]; };
    const left = [...nodes].sort(cmp), done = new Set([recordId]), out = [];
    while (left.length) {
      const i = left.findIndex((n) => sources(n).every((s) => done.has(s)));
      const [n] = left.splice(i < 0 ? 0 : i, 1);
      out.push(n); done.add(n.id);
    }
    return out;
  }

  function graphJSON() {
    const nodes = topo(stepNodes());
    order = nodes.map((n) => n.id);
    const steps = nodes.map((n) => {
      const m = meta.get(n.id) || { kind: n.name, extra: {} }, d = n.data;
      const step = { name: d.name || `step${n.id}`, kind: m.kind, inputs: parseInputs(d.inputs), extra: m.extra };
      if (d.model) step.model = d.model;
      if (m.kind === "task") {
        Object.assign(step, { template: d.template || "", strategy: d.strategy || "direct" });
        if (splitLabels(d.labels).length) step.labels = splitLabels(d.labels);
        if ((d.schema_text || "").trim()) step.schema_text = d.schema_text;
      } else if (m.kind === "call") step.call = d.call || "";
      else step.pipeline = d.pipeline || "";
      return step;
    });
    return { pipeline: { ...pipelineMeta, name: $("#pipe-name").value.trim() || "pipeline" }, steps, form };
  }

  function defaultPosition(step, i, graph, depth) {
    const d = depth[step.name] = 1 + Math.max(0, ...step.reads_steps.map((s) => depth[s] || 0));
    const same = graph.steps.slice(0, i).filter((s) => depth[s.name] === d).length;
    return { x: 40 + d * 300, y: 20 + same * 300 };
  }

  let arrange = false;  // "Arrange": lay the nodes out afresh instead of keeping where they are
  function draw(graph) {
    building = true;
    try {
      if (!arrange) for (const n of stepNodes()) positions[n.data.name] = positions[n.data.name] || { x: n.pos_x, y: n.pos_y };
      arrange = false;
      editor.clear(); meta.clear();
      pipelineMeta = Object.fromEntries(Object.entries(graph.pipeline).filter(([k]) => k !== "name"));
      form = graph.form || "auto";
      $("#pipe-name").value = graph.pipeline.name ?? "pipeline";
      const fields = [...new Set(graph.steps.flatMap((s) => s.reads_fields))];
      addRecord(fields);
      const ids = {}, depth = {};
      graph.steps.forEach((s, i) => {
        const pos = positions[s.name] || defaultPosition(s, i, graph, depth);
        depth[s.name] = depth[s.name] || 1;
        ids[s.name] = addStep(s, pos);
      });
      for (const s of graph.steps) {
        for (const src of s.reads_steps) editor.addConnection(ids[src], ids[s.name], "output_1", "input_1");
        if (s.reads_fields.length) editor.addConnection(recordId, ids[s.name], "output_1", "input_1");
      }
      order = graph.steps.map((s) => ids[s.name]);
    } finally {
      building = false;
    }
  }

  // -------------------------------------------------------------- problems, gutter
  function renderGutter(badLine) {
    const n = yaml.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) =>
      el("span", i + 1 === badLine ? { class: "err", "data-line": i + 1 } : { "data-line": i + 1 }, i + 1)));
    gutter.scrollTop = yaml.scrollTop;
  }

  function showProblems(problems, valid) {
    for (const n of stepNodes()) {
      nodeEl(n.id)?.classList.remove("has-problem");
      const slot = nodeEl(n.id)?.querySelector(".node-problem");
      if (slot) slot.textContent = "";
    }
    for (const p of problems) {
      const id = p.step !== null && p.step !== undefined ? order[p.step] : null;
      const slot = id !== null && id !== undefined ? nodeEl(id)?.querySelector(".node-problem") : null;
      if (slot) {
        slot.textContent = p.message + (p.hint ? ` — ${p.hint}` : "");
        nodeEl(id).classList.add("has-problem");
      }
    }
    const p = problems[0];
    renderGutter(p ? p.line : null);
    yaml.setAttribute("aria-invalid", p ? "true" : "false");
    status.replaceChildren(p
      ? el("span", { class: "bad", id: "problem", "data-line": p.line ?? "", "data-step": p.step ?? "" },
        `${p.line ? "line " + p.line + ": " : ""}${p.message}${p.field ? " [" + p.field + "]" : ""}`)
      : el("span", { class: "ok" }, valid));
  }

  function setInputs(list) {
    inputs = list && list.length ? list : ["text"];
    const old = {};
    document.querySelectorAll("#try-inputs textarea").forEach((t) => { old[t.dataset.field] = t.value; });
    $("#try-inputs").replaceChildren(...inputs.map((f) => el("label", {}, `${f} `,
      el("textarea", { id: `try-${f}`, "data-field": f, rows: "2" }, old[f] || ""))));
    showFields(inputs);
  }

  // -------------------------------------------------------------- both directions
  const later = debounce(async () => {
    const mine = seq;
    try {
      const out = await api("/api/builder/yaml", { method: "POST", json: { graph: graphJSON() } });
      if (mine !== seq) return;
      if (out.yaml !== null) {
        yaml.value = out.yaml;
        localStorage.setItem(STORE_KEY, out.yaml);
      }
      showProblems(out.problems, `valid · steps: ${graphJSON().steps.map((s) => s.name).join(", ")}`);
      if (!out.problems.length) setInputs(out.inputs);
      $("#graph-status").textContent = "YAML updated from the graph";
      settled();
    } catch (err) {
      status.replaceChildren(el("span", { class: "bad" }, err.message));
    }
  }, 300);
  const fromGraph = () => { if (!building) { touch(); later(); } };

  async function fromYaml() {
    localStorage.setItem(STORE_KEY, yaml.value);
    const mine = seq;
    try {
      const out = await api("/api/builder/graph", { method: "POST", json: { yaml: yaml.value } });
      if (mine !== seq) return;
      if (!out.ok) {  // keep the last valid graph; mark the line
        renderGutter(out.syntax_error.line);
        yaml.setAttribute("aria-invalid", "true");
        status.replaceChildren(el("span", { class: "bad", id: "problem", "data-line": out.syntax_error.line ?? "" },
          `${out.syntax_error.line ? "line " + out.syntax_error.line + ": " : ""}${out.syntax_error.message}`));
        $("#graph-status").textContent = "the graph shows the last readable YAML";
        document.body.dataset.graphKept = "1";
        settled();
        return;
      }
      document.body.dataset.graphKept = "0";
      draw(out.graph);
      showProblems(out.problems, `valid · steps: ${out.graph.steps.map((s) => s.name).join(", ")}`);
      if (!out.problems.length) setInputs(out.inputs);
      $("#graph-status").textContent = "graph updated from the YAML";
      settled();
    } catch (err) {
      status.replaceChildren(el("span", { class: "bad" }, err.message));
    }
  }
  const laterYaml = debounce(fromYaml, 300);
  yaml.addEventListener("input", () => { touch(); renderGutter(null); laterYaml(); });
  yaml.addEventListener("scroll", () => { gutter.scrollTop = yaml.scrollTop; });

  // -------------------------------------------------------------- editing the graph
  const reaches = (from, to) => {  // is there a wire path from `from` to `to`?
    const seen = new Set(), stack = [from];
    while (stack.length) {
      const id = stack.pop();
      if (id === to) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const c of node(id).outputs.output_1?.connections || []) stack.push(Number(c.node));
    }
    return false;
  };
  const fieldOf = (d) => (splitLabels(d.labels).length ? ".label" : (meta.get(d.__id)?.kind === "task" && !(d.schema_text || "").trim() ? ".text" : ""));
  function variableFor(name, taken) {
    let v = String(name).replace(/\W/g, "_").replace(/^(\d)/, "_$1") || "step";
    while (v in taken) v += "_";
    return v;
  }

  editor.on("connectionCreated", (c) => {
    if (building) return;
    const src = Number(c.output_id), dst = Number(c.input_id);
    if (dst === recordId || src === dst || (src !== recordId && reaches(dst, src))) {
      editor.removeSingleConnection(c.output_id, c.input_id, c.output_class, c.input_class);
      $("#graph-status").textContent = "that wire would make a cycle";
      return;
    }
    if (src !== recordId) {
      const a = node(src).data, b = { ...node(dst).data };
      const mapping = parseInputs(b.inputs);
      if (!Object.values(mapping).some((e) => e.split(".")[0] === a.name)) {
        mapping[variableFor(a.name, mapping)] = a.name + fieldOf({ ...a, __id: src });
        b.inputs = formatInputs(mapping);
        editor.updateNodeDataFromId(dst, b);
      }
    }
    fromGraph();
  });
  editor.on("connectionRemoved", (c) => {
    if (building) return;
    const src = Number(c.output_id), dst = Number(c.input_id);
    if (src !== recordId && editor.drawflow.drawflow.Home.data[dst] && editor.drawflow.drawflow.Home.data[src]) {
      const name = node(src).data.name, b = { ...node(dst).data };
      const mapping = Object.fromEntries(Object.entries(parseInputs(b.inputs)).filter(([, e]) => e.split(".")[0] !== name));
      b.inputs = formatInputs(mapping);
      editor.updateNodeDataFromId(dst, b);
    }
    fromGraph();
  });
  editor.on("nodeRemoved", (id) => { meta.delete(Number(id)); if (!building) fromGraph(); });
  editor.on("nodeDataChanged", (id) => {
    if (building) return;
    id = Number(id);
    const m = meta.get(id), name = node(id).data.name;
    if (m && m.name !== name) {  // a renamed step: wires into others follow the new name
      for (const n of stepNodes()) {
        const map = parseInputs(n.data.inputs);
        let changed = false;
        for (const [k, e] of Object.entries(map)) {
          if (e.split(".")[0] === m.name) { map[k] = name + e.slice(m.name.length); changed = true; }
        }
        if (changed) editor.updateNodeDataFromId(n.id, { ...n.data, inputs: formatInputs(map) });
      }
      m.name = name;
    }
    fromGraph();
  });
  editor.on("nodeMoved", (id) => {
    const n = node(id);
    if (n.id !== recordId) positions[n.data.name] = { x: n.pos_x, y: n.pos_y };
    localStorage.setItem(POS_KEY, JSON.stringify(positions));
  });
  $("#pipe-name").addEventListener("input", fromGraph);

  function newStep(kind) {
    const names = new Set(stepNodes().map((n) => n.data.name));
    let i = stepNodes().length + 1;
    while (names.has(`step${i}`)) i++;
    const count = stepNodes().length;
    const step = { name: `step${i}`, kind, template: kind === "task" ? "{text}" : "", inputs: {}, extra: {} };
    addStep(step, { x: 340 + (count % 3) * 300, y: 20 + Math.floor(count / 3) * 320 });
    fromGraph();
  }
  $("#add-task").addEventListener("click", () => newStep("task"));
  $("#add-call").addEventListener("click", () => newStep("call"));
  $("#add-pipeline").addEventListener("click", () => newStep("pipeline"));
  $("#layout-btn").addEventListener("click", () => {
    for (const n of stepNodes()) delete positions[n.data.name];
    localStorage.setItem(POS_KEY, JSON.stringify(positions));
    arrange = true;
    touch();
    fromYaml();
  });

  $("#open-pipeline").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    const p = await api(`/api/pipelines/${encodeURIComponent(e.target.value)}`);
    touch();
    yaml.value = p.yaml;
    $("#save-name").value = p.name;
    fromYaml();
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

  // -------------------------------------------------------------- try: each step's output on its node
  const shown = (out) => {
    if (out === null || out === undefined) return "";
    if (typeof out !== "object") return String(out);
    if (out.label !== undefined) return `${out.label}` + (out.confidence !== undefined ? ` (${fmt(out.confidence, 2)})` : "");
    if (out.text !== undefined) return String(out.text);
    const { tokens, method, ...rest } = out;
    return JSON.stringify(rest.output ?? rest.value ?? rest);
  };
  $("#try-btn").addEventListener("click", async () => {
    const button = $("#try-btn");
    $("#try-error").textContent = "";
    const record = {};
    document.querySelectorAll("#try-inputs textarea").forEach((t) => { record[t.dataset.field] = t.value; });
    button.disabled = true;
    try {
      const out = await api("/api/try", { method: "POST", json: { yaml: yaml.value, inputs: record } });
      $("#try-latency").textContent = `${fmt(out.latency_ms, 0)} ms`;
      if (out.error) $("#try-error").textContent = out.error;
      const res = out.result || {};
      const perStep = res.steps || { [node(order[order.length - 1])?.data.name]: res };
      for (const id of order) {
        const slot = nodeEl(id)?.querySelector(".node-output");
        const name = node(id).data.name;
        if (slot) slot.textContent = name in perStep ? `→ ${shown(perStep[name])}` : "";
      }
      document.body.dataset.tried = String(Date.now());
    } catch (err) {
      $("#try-error").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });

  // -------------------------------------------------------------- run on a file, watched live
  $("#run-file").addEventListener("change", async () => {
    $("#run-error").textContent = "";
    $("#run-btn").disabled = true;
    const file = $("#run-file").files[0];
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    try {
      runUpload = await api("/api/uploads", { method: "POST", body: data });
      $("#run-upload-info").textContent = `${runUpload.filename}: ${runUpload.rows} records · columns: ${runUpload.columns.join(", ")}`;
      const opts = (sel) => runUpload.columns.map((c) => { const o = el("option", { value: c }, c); if (c === sel) o.selected = true; return o; });
      $("#run-columns").replaceChildren(...inputs.map((f) => el("label", {}, `Column for input “${f}” `,
        el("select", { "data-field": f }, ...opts(runUpload.columns.includes(f) ? f : runUpload.columns[0])))));
      const guess = runUpload.columns.find((c) => /^(label|gold|target|class|y)$/i.test(c)) || "";
      $("#run-label").replaceChildren(el("option", { value: "" }, "(none)"), ...opts(guess));
      $("#run-btn").disabled = false;
    } catch (err) {
      runUpload = null;
      $("#run-error").textContent = err.message;
    }
  });
  $("#file-run").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#run-btn").disabled = true;
    try {
      const body = { upload_id: runUpload.upload_id, yaml: yaml.value, columns: {}, label_column: $("#run-label").value || null };
      document.querySelectorAll("#run-columns select").forEach((s) => { body.columns[s.dataset.field] = s.value; });
      const run = await api("/api/runs", { method: "POST", json: body });
      $("#run-live").hidden = false;
      $("#run-link").textContent = run.run_id;
      $("#run-link").href = `/runs/${run.run_id}`;
      live(async () => {
        const r = await api(`/api/runs/${run.run_id}`);
        $("#run-status").textContent = r.status;
        $("#run-progress").max = r.total;
        $("#run-progress").value = r.done + r.failed;
        $("#run-count").textContent = `${r.done + r.failed}/${r.total}`;
        const active = r.status === "queued" || r.status === "running";
        if (!active) {
          const rep = await api(`/api/runs/${run.run_id}/report`);
          if (rep.quality && !rep.quality.unavailable) $("#run-accuracy").textContent = `accuracy ${fmt(rep.quality.accuracy)}`;
          document.body.dataset.runFinished = "1";
        }
        return active;
      }, { onError: (err) => { $("#run-error").textContent = err.message; } });
    } catch (err) {
      $("#run-error").textContent = err.message;
      $("#run-btn").disabled = false;
    }
  });

  // -------------------------------------------------------------- start
  (async () => {
    try {
      options = await api("/api/builder/options");
    } catch (err) { /* the defaults do */ }
    if (!options.calls.length) $("#add-call").title = "the operator allowed no callables (openautoglm serve --allow-call)";
    $("#add-call").disabled = !options.calls.length;
    const saved = localStorage.getItem(STORE_KEY);
    if (saved && !new URLSearchParams(location.search).has("fresh")) yaml.value = saved;
    renderGutter(null);
    await fromYaml();
    document.body.dataset.builderReady = "1";
  })();
}

PAGES.builder = initBuilder;
