// Monitoring over time: uPlot charts over the store's per-record events (uses $, el, api, live, charts, COLORS from app.js).
"use strict";

function initMonitor() {
  const TIME = "time (local)";
  function timeChart(id, y, series, data, yRange) {
    if (charts[id]) { charts[id].setData(data); return; }
    const box = $(`#${id}`);
    charts[id] = new uPlot({
      width: Math.max(320, box.clientWidth), height: CHART_HEIGHT,
      scales: { x: { time: true }, y: { range: yRange || fromZero } },
      axes: [{ label: TIME, labelSize: 24 }, { label: y, labelSize: 24, size: 60 }],
      series: [{ label: TIME }, ...series], legend: { live: false },
    }, data, box);
  }
  const line = (label, color, width = 2, dash) => ({ label, stroke: color, width, dash, spanGaps: false,
    points: { show: true, size: 6, fill: color } });

  async function refresh() {
    const win = $("#mon-window").value, pipe = $("#mon-pipeline").value;
    const out = await api(`/api/monitor?window=${win}` + (pipe ? `&pipeline=${encodeURIComponent(pipe)}` : ""));
    const sel = $("#mon-pipeline"), keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "(all)"), ...out.pipelines.map((p) => el("option", { value: p }, p)));
    sel.value = out.pipelines.includes(keep) ? keep : "";
    const t = out.totals, s = out.series;
    $("#t-requests").textContent = t.requests;
    $("#t-errors").textContent = t.error_rate === null ? "–" : `${(100 * t.error_rate).toFixed(1)} %`;
    $("#t-accuracy").textContent = fmt(t.accuracy);
    $("#t-latency").textContent = t.p50_ms === null ? "–" : `${fmt(t.p50_ms, 0)} / ${fmt(t.p95_ms, 0)}`;
    timeChart("qps-chart", "throughput (records/s)", [line("records/s", COLORS.p50)], [s.t, s.qps]);
    timeChart("mon-latency-chart", "latency per record (ms)",
      [line("P50", COLORS.p50, 5), line("P95", COLORS.p95, 3), line("P99", COLORS.p99, 1.5, [6, 4])],
      [s.t, s.p50_ms, s.p95_ms, s.p99_ms]);
    timeChart("error-chart", "error rate (fraction)", [line("error rate", COLORS.p99)], [s.t, s.error_rate], [0, 1]);
    timeChart("accuracy-chart", "accuracy (fraction correct)", [line("accuracy", COLORS.p50)], [s.t, s.accuracy], [0, 1]);
    $("#mon-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.monitorLoaded = "1";
  }
  $("#mon-window").addEventListener("change", refresh);
  $("#mon-pipeline").addEventListener("change", refresh);
  live(refresh, { interval: 10000, max: 30000 });
}

PAGES.monitor = initMonitor;
