// The data page: upload, then profile / clean / label issues / drift, each report inline and downloadable.
"use strict";

function initData() {
  let upload = null, current = null;
  const tools = ["#run-profile", "#run-clean", "#run-issues"];

  async function send(file) {
    const data = new FormData();
    data.append("file", file);
    return api("/api/uploads", { method: "POST", body: data });
  }

  $("#data-file").addEventListener("change", async () => {
    $("#data-error").textContent = "";
    tools.forEach((t) => { $(t).disabled = true; });
    const file = $("#data-file").files[0];
    if (!file) return;
    try {
      upload = await send(file);
      $("#data-info").textContent = `${upload.filename}: ${upload.rows} rows · columns: ${upload.columns.join(", ")}`;
      const opts = (sel) => upload.columns.map((c) => { const o = el("option", { value: c }, c); if (c === sel) o.selected = true; return o; });
      const text = upload.columns.find((c) => /^(text|sentence|review|content)$/i.test(c)) || upload.columns[0];
      const label = upload.columns.find((c) => /^(label|gold|target|class|y)$/i.test(c)) || "";
      $("#data-text").replaceChildren(...opts(text));
      $("#data-label").replaceChildren(el("option", { value: "" }, "(none)"), ...opts(label));
      tools.forEach((t) => { $(t).disabled = false; });
      $("#run-drift").disabled = !current;
    } catch (err) {
      upload = null;
      $("#data-error").textContent = err.message;
    }
  });
  $("#drift-file").addEventListener("change", async () => {
    $("#data-error").textContent = "";
    const file = $("#drift-file").files[0];
    current = null;
    try {
      if (file) current = await send(file);
    } catch (err) {
      $("#data-error").textContent = err.message;
    }
    $("#run-drift").disabled = !(current && upload);
  });

  function show(rep) {
    $("#report-box").hidden = false;
    $("#report-title").textContent = `${rep.kind}: ${rep.input} (${rep.rows} rows)`;
    $("#report-downloads").replaceChildren("Downloads: ", ...Object.entries(rep.downloads).flatMap(([name, url], i) =>
      [i ? " · " : "", el("a", { href: url, download: "" }, name)]));
    const flat = Object.entries(rep.summary || {}).filter(([, v]) => v === null || typeof v !== "object");
    $("#report-summary").replaceChildren(...flat.slice(0, 24).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    $("#report-frame").src = rep.html_url;
    document.body.dataset.report = rep.kind;
  }

  async function run(path, extra = {}) {
    $("#data-error").textContent = "";
    $("#data-busy").hidden = false;
    document.body.dataset.report = "";
    try {
      const body = { upload_id: upload.upload_id, text_column: $("#data-text").value, ...extra };
      const label = $("#data-label").value;
      if (label && !("label_column" in extra)) body.label_column = label;
      show(await api(`/api/data/${path}`, { method: "POST", json: body }));
      list();
    } catch (err) {
      $("#data-error").textContent = err.message;
    } finally {
      $("#data-busy").hidden = true;
    }
  }
  $("#run-profile").addEventListener("click", () => run("profile"));
  $("#run-clean").addEventListener("click", () => run("clean", { pii: $("#clean-pii").value, label_column: null }));
  $("#run-issues").addEventListener("click", () => run("label-issues", {
    label_column: $("#data-label").value || "label", embedder: $("#data-embedder").value }));
  $("#run-drift").addEventListener("click", () => run("drift", { current_upload_id: current.upload_id, embedder: $("#data-embedder").value }));

  async function list() {
    try {
      const out = await api("/api/data/reports?limit=20");
      $("#report-list").replaceChildren(...out.reports.map((r) => el("li", {}, `${r.kind} · ${r.input} · `,
        el("a", { href: `/api/data/reports/${r.report_id}/report.html`, target: "_blank", rel: "noopener" }, "report"))));
    } catch (err) { /* optional */ }
  }
  list();
}

PAGES.data = initData;
