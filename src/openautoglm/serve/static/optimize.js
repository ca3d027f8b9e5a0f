// The optimizer as a background job: start on uploads, watch stages and candidates live, stop, save, compare.
"use strict";

function initOptimize() {
  const uploads = { train: null, dev: null };
  let watcher = null, current = null;

  async function upload(which) {
    const file = $(`#opt-${which}`).files[0];
    uploads[which] = null;
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    uploads[which] = await api("/api/uploads", { method: "POST", body: data });
  }
  async function uploadsChanged(which) {
    $("#opt-error").textContent = "";
    $("#opt-start").disabled = true;
    try {
      await upload(which);
      const t = uploads.train, d = uploads.dev;
      $("#opt-upload-info").textContent = [t && `train: ${t.filename}, ${t.rows} rows (${t.columns.join(", ")})`,
        d && `dev: ${d.filename}, ${d.rows} rows`].filter(Boolean).join(" · ");
      if (t) {
        const guess = t.columns.find((c) => /^(label|gold|target|class|y)$/i.test(c)) || t.columns[t.columns.length - 1];
        $("#opt-label").replaceChildren(...t.columns.map((c) => { const o = el("option", { value: c }, c); if (c === guess) o.selected = true; return o; }));
        $("#opt-start").disabled = false;
      }
    } catch (err) {
      $("#opt-error").textContent = err.message;
    }
  }
  $("#opt-train").addEventListener("change", () => uploadsChanged("train"));
  $("#opt-dev").addEventListener("change", () => uploadsChanged("dev"));

  $("#opt-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#opt-error").textContent = "";
    const choice = $("#opt-pipeline").value;
    const body = {
      train_upload: uploads.train.upload_id, label_column: $("#opt-label").value,
      budget: Number($("#opt-budget").value), metric: $("#opt-metric").value, holdout: Number($("#opt-holdout").value),
      max_demos: Number($("#opt-demos").value), retrieval: $("#opt-retrieval").checked,
    };
    if (uploads.dev) body.dev_upload = uploads.dev.upload_id;
    if (choice === "__editor__") {
      body.yaml = localStorage.getItem("openautoglm.yaml");
      if (!body.yaml) { $("#opt-error").textContent = "the editor has no pipeline yet"; return; }
    } else body.pipeline = choice;
    try {
      const job = await api("/api/optimize", { method: "POST", json: body });
      history.replaceState(null, "", `/optimize?id=${job.opt_id}`);
      watch(job.opt_id);
      list();
    } catch (err) {
      $("#opt-error").textContent = err.message;
    }
  });

  function show(job) {
    current = job;
    $("#opt-live").hidden = false;
    $("#opt-id").textContent = job.opt_id;
    $("#opt-status").textContent = job.status;
    document.body.dataset.optStatus = job.status;
    $("#opt-calls-bar").max = job.budget;
    $("#opt-calls-bar").value = Math.min(job.calls, job.budget);
    $("#opt-calls").textContent = `${job.calls}/${job.budget}`;
    $("#opt-left").textContent = job.budget_left;
    $("#opt-stop").hidden = !["queued", "running"].includes(job.status);
    $("#opt-job-error").textContent = job.error || "";
    $("#opt-stages").replaceChildren(...job.stages.map((s) => el("li", { class: `stage ${s.state}`, "data-stage": s.stage },
      `${s.stage}: ${s.state}` + (s.seconds !== null && s.seconds !== undefined ? ` (${fmt(s.seconds, 1)} s)` : ""))));
    $("#opt-candidates tbody").replaceChildren(...job.candidates.map((c) => el("tr", { "data-stage": c.stage },
      el("td", {}, c.stage), el("td", {}, c.candidate), el("td", {}, fmt(c.score)), el("td", {}, c.rows))));
    $("#opt-log").textContent = (job.log || []).join("\n");
    const finished = job.chosen_yaml && !["queued", "running", "stopping"].includes(job.status);
    $("#opt-result").hidden = !finished;
    if (finished) {
      const r = job.result || {}, s = r.scores || {};
      $("#opt-summary").textContent = `${r.chosen || ""} · ${r.metric || ""} on selection rows: ` +
        `${fmt(s.base_select)} → ${fmt(s.best_select)}` +
        (s.best_holdout !== undefined ? ` · held out: ${fmt(s.base_holdout)} → ${fmt(s.best_holdout)}` : "") +
        ((r.notes || []).length ? ` · ${r.notes.join("; ")}` : "");
      $("#opt-yaml").textContent = job.chosen_yaml;
      if (!$("#opt-save-name").value) $("#opt-save-name").value = `${job.name}-optimized`.replace(/[^A-Za-z0-9_.-]/g, "_");
    }
  }

  function watch(id) {
    if (watcher) watcher.stop();
    watcher = live(async () => {
      const job = await api(`/api/optimize/${encodeURIComponent(id)}`);
      show(job);
      return ["queued", "running", "stopping"].includes(job.status);
    }, { onError: (err) => { $("#opt-job-error").textContent = err.message; } });
  }

  $("#opt-stop").addEventListener("click", async () => {
    try {
      show(await api(`/api/optimize/${current.opt_id}/stop`, { method: "POST" }));
    } catch (err) {
      $("#opt-job-error").textContent = err.message;
    }
  });
  $("#opt-save").addEventListener("click", async () => {
    const name = $("#opt-save-name").value.trim();
    try {
      await api(`/api/optimize/${current.opt_id}/save`, { method: "POST", json: { name } });
      $("#opt-save-status").textContent = `saved as ${name}`;
    } catch (err) {
      $("#opt-save-status").textContent = err.message;
    }
  });
  $("#opt-compare").addEventListener("click", async () => {
    try {
      const out = await api(`/api/optimize/${current.opt_id}/compare`, { method: "POST" });
      $("#opt-compare-status").replaceChildren(`runs ${out.runs.join(" and ")} started · `,
        el("a", { href: out.compare_url, id: "opt-compare-link" }, "open the comparison"));
    } catch (err) {
      $("#opt-compare-status").textContent = err.message;
    }
  });

  async function list() {
    try {
      const out = await api("/api/optimize?limit=20");
      $("#opt-list").replaceChildren(...out.jobs.map((j) => el("li", {},
        el("a", { href: `/optimize?id=${j.opt_id}` }, j.opt_id), ` ${j.name} · ${j.status} · ${j.calls}/${j.budget} calls`)));
    } catch (err) { /* the list is optional */ }
  }
  list();
  const id = new URLSearchParams(location.search).get("id");
  if (id) watch(id);
}

PAGES.optimize = initOptimize;
