// Run comparison: metrics and bootstrap deltas, and the records side by side (uses $, el, api, fmt from app.js).
"use strict";

function initCompare() {
  const picked = [];
  const params = new URLSearchParams(location.search);
  const fromUrl = params.getAll("runs").flatMap((v) => v.split(",")).filter(Boolean);
  const boxes = [...document.querySelectorAll("input.pick")];

  function sync() {
    $("#compare-btn").disabled = picked.length < 2;
    $("#picked").textContent = picked.length ? `baseline: ${picked[0]}` + (picked.length > 1 ? ` · then ${picked.slice(1).join(", ")}` : "") : "";
  }
  boxes.forEach((b) => b.addEventListener("change", () => {
    const i = picked.indexOf(b.value);
    if (b.checked && i < 0) picked.push(b.value);
    if (!b.checked && i >= 0) picked.splice(i, 1);
    sync();
  }));
  for (const id of fromUrl) {
    const box = boxes.find((b) => b.value === id);
    if (box) { box.checked = true; picked.push(id); }
  }
  sync();

  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
  const signed = (x, d = 3) => {
    if (x === null || x === undefined) return "–";
    const text = Number(x).toFixed(d);
    return Number(text) === 0 ? Number(0).toFixed(d) : (x > 0 ? "+" : "") + text;
  };
  const query = () => picked.map((r) => `runs=${encodeURIComponent(r)}`).join("&");

  async function compare() {
    $("#compare-error").textContent = "";
    try {
      const out = await api(`/api/compare?${query()}`);
      history.replaceState(null, "", `/compare?${query()}`);
      $("#compare-result").hidden = false;
      const head = ["run", "name", "status", "accuracy", "macro-F1", "error rate", "mean confidence",
        "latency P50 (ms)", "latency P95 (ms)", "records/s", "model calls", "prompt tokens", "completion tokens"];
      $("#metrics-table").replaceChildren(el("tr", {}, ...head.map((h) => el("th", {}, h))),
        ...out.runs.map((r) => el("tr", { "data-run": r.run_id },
          el("td", {}, el("a", { href: `/runs/${r.run_id}` }, r.run_id)), el("td", {}, r.name), el("td", {}, r.status),
          el("td", { class: "m-accuracy" }, fmt(r.metrics.accuracy)), el("td", {}, fmt(r.metrics.macro_f1)),
          el("td", {}, pct(r.metrics.error_rate)), el("td", {}, fmt(r.metrics.mean_confidence)),
          el("td", {}, fmt(r.latency.p50_ms, 1)), el("td", {}, fmt(r.latency.p95_ms, 1)), el("td", {}, fmt(r.latency.records_per_s, 2)),
          el("td", {}, r.cost.calls), el("td", {}, r.cost.prompt_tokens), el("td", {}, r.cost.completion_tokens))));
      const ci = (b) => (b ? `${signed(b.delta)} [${signed(b.ci95[0])}, ${signed(b.ci95[1])}]` : "–");
      const dhead = ["run", "Δ accuracy [95 % CI]", "Δ macro-F1 [95 % CI]", "Δ error rate", "Δ P50 (ms)", "Δ model calls",
        "Δ prompt tokens", "Δ completion tokens", "disagreements"];
      $("#delta-table").replaceChildren(el("tr", {}, ...dhead.map((h) => el("th", {}, h))),
        ...out.deltas.map((d) => el("tr", { "data-run": d.run_id },
          el("td", {}, `${d.run_id} vs ${d.against}`), el("td", { class: "d-accuracy" }, ci(d.bootstrap?.accuracy)),
          el("td", { class: "d-f1" }, ci(d.bootstrap?.macro_f1)), el("td", {}, signed(d.error_rate)), el("td", {}, signed(d.p50_ms, 1)),
          el("td", {}, signed(d.calls, 0)), el("td", {}, signed(d.prompt_tokens, 0)), el("td", {}, signed(d.completion_tokens, 0)),
          el("td", { class: "d-disagree" }, d.disagreements))));
      const gold = $("#rec-gold"), keep = gold.value;
      gold.replaceChildren(el("option", { value: "" }, "(any)"), ...out.labels.map((l) => el("option", { value: l }, l)));
      gold.value = out.labels.includes(keep) ? keep : "";
      await records();
      document.body.dataset.compared = "1";
    } catch (err) {
      $("#compare-error").textContent = err.message;
    }
  }

  function callsView(calls) {
    if (!calls.length) return el("span", { class: "muted" }, "no model calls");
    return el("details", {}, el("summary", {}, `${calls.length} call(s): prompt and response`),
      ...calls.map((c) => el("div", { class: "call" },
        el("div", { class: "muted" }, `${c.step || ""} · ${c.kind} · attempt ${c.attempt}`),
        el("pre", { class: "prompt" }, c.prompt), el("pre", { class: "response" }, c.response || c.error || ""))));
  }

  async function records() {
    const f = $("#rec-filter").value, g = $("#rec-gold").value, q = $("#rec-q").value.trim();
    const url = `/api/compare/records?${query()}&filter=${f}&limit=200` + (g ? `&gold=${encodeURIComponent(g)}` : "") +
      (q ? `&q=${encodeURIComponent(q)}` : "");
    const out = await api(url);
    $("#rec-total").textContent = `${out.total} record(s)`;
    $("#matrix").replaceChildren(
      el("tr", {}, el("th", {}, "#"), el("th", {}, "text"), el("th", {}, "gold"), ...out.runs.map((r) => el("th", {}, r))),
      ...out.records.map((r) => el("tr", { "data-idx": r.idx },
        el("td", {}, r.idx), el("td", { class: "text" }, r.text), el("td", {}, r.gold ?? ""),
        ...r.answers.map((a) => el("td", { class: a.correct === false ? "answer wrong" : a.correct ? "answer right" : "answer" },
          el("strong", { class: "pred" }, a.error ? "" : a.predicted ?? ""),
          a.confidence !== null && a.confidence !== undefined ? ` (${fmt(a.confidence, 2)})` : "",
          a.error ? el("div", { class: "error" }, a.error) : "", callsView(a.calls))))));
  }

  $("#compare-btn").addEventListener("click", compare);
  $("#rec-filter").addEventListener("change", records);
  $("#rec-gold").addEventListener("change", records);
  $("#rec-q").addEventListener("input", debounce(records, 250));
  if (picked.length >= 2) compare();
}

PAGES.compare = initCompare;
