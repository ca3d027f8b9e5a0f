// The SQL page: a chat over the operator's databases (uses $, el, api, fmt from app.js).
"use strict";

function initSql() {
  let conv = null, schemas = [];

  function table(columns, rows) {
    return el("table", { class: "rows" }, el("tr", {}, ...columns.map((c) => el("th", {}, c))),
      ...rows.map((r) => el("tr", {}, ...r.map((v) => el("td", {}, v === null ? "NULL" : v)))));
  }

  function turnView(t) {
    const cands = el("table", { class: "candidates" },
      el("tr", {}, ...["source", "SQL", "ran", "votes", "attempts", "rows", "error"].map((h) => el("th", {}, h))),
      ...t.candidates.map((c) => el("tr", { class: c.ok ? "" : "failed" }, el("td", {}, c.source), el("td", {}, el("code", {}, c.sql)),
        el("td", {}, c.ok ? "yes" : "no"), el("td", {}, c.votes), el("td", {}, c.attempts), el("td", {}, c.row_count ?? ""),
        el("td", { class: "error" }, c.error || ""))));
    const attempts = (t.attempts || []).map((list, i) => list.length > 1 || (list[0] && !list[0].ok)
      ? el("div", { class: "attempts" }, el("div", { class: "muted" }, `candidate ${i + 1} (${t.candidates[i]?.source ?? ""}): corrections`),
        el("ol", {}, ...list.map((a) => el("li", { class: a.ok ? "ok" : "bad" }, el("code", {}, a.sql),
          a.ok ? " ✓ ran" : ` ✗ ${a.feedback}`))))
      : null).filter(Boolean);
    return el("div", { class: "turn", "data-turn": t.question },
      el("div", { class: "question" }, t.follow_up ? el("span", { class: "badge" }, "follow-up") : "", t.question),
      el("div", { class: "answer" },
        el("div", {}, "SQL ", el("code", { class: "sql" }, t.sql || "(none)"),
          ` · confidence ${fmt(t.confidence, 2)}` + (t.seconds ? ` · ${fmt(t.seconds, 1)} s` : "")),
        t.error ? el("div", { class: "error" }, t.error) : table(t.columns, t.rows),
        t.truncated ? el("div", { class: "muted" }, "more rows than shown") : "",
        el("details", {}, el("summary", {}, `${t.candidates.length} candidate(s)` + (attempts.length ? `, ${attempts.length} with corrections` : "")),
          cands, ...attempts)));
  }

  async function open() {
    $("#sql-error").textContent = "";
    try {
      conv = await api("/api/sql/conversations", { method: "POST",
        json: { database: $("#sql-db").value, candidates: Number($("#sql-candidates").value) || 3 } });
      $("#sql-conv").textContent = `conversation ${conv.conversation_id} on ${conv.database}`;
      $("#sql-chat").replaceChildren();
      showSchema();
    } catch (err) {
      $("#sql-error").textContent = err.message;
    }
  }

  function showSchema() {
    const db = schemas.find((d) => d.name === $("#sql-db").value);
    if (!db) { $("#sql-schema").textContent = ""; return; }
    $("#sql-schema").replaceChildren(db.error ? el("span", { class: "error" }, db.error)
      : el("ul", {}, ...db.tables.map((t) => el("li", {}, el("strong", {}, t.name), ` (${t.columns.join(", ")})`))),
    el("div", { class: "muted" }, db.dialect ? `dialect: ${db.dialect}` : ""));
  }

  $("#sql-new").addEventListener("click", open);
  $("#sql-db").addEventListener("change", open);
  $("#sql-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = $("#sql-question").value.trim();
    if (!q) return;
    if (!conv) await open();
    $("#sql-ask").disabled = true;
    $("#sql-error").textContent = "";
    try {
      const turn = await api(`/api/sql/conversations/${conv.conversation_id}/ask`, { method: "POST", json: { question: q } });
      $("#sql-chat").append(turnView(turn));
      $("#sql-question").value = "";
      document.body.dataset.turns = String($("#sql-chat").children.length);
    } catch (err) {
      $("#sql-error").textContent = err.message;
    } finally {
      $("#sql-ask").disabled = false;
    }
  });

  (async () => {
    try {
      schemas = (await api("/api/sql/databases")).databases;
    } catch (err) {
      $("#sql-schema").textContent = err.message;
    }
    showSchema();
    if ($("#sql-db").value) await open();
  })();
}

PAGES.sql = initSql;
