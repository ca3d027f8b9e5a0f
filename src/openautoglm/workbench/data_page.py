"""The data page: profile, clean, label issues and drift (:mod:`openautoglm.data`) on uploads.

Files come in through ``POST /api/uploads`` (kept under the server's ``uploads/`` folder with
random names).  Each tool reads the upload's records (never a path from the request), checks
the columns it needs first - a wrong column is answered with the columns the file has - and
writes its outputs into ``<home>/data-reports/<report id>/``: the library's self-contained HTML
report and the downloads (JSON, the cleaned file and its audit, the ranked issues).  Reports
are served with a ``sandbox`` Content-Security-Policy (no scripts, no same-origin access) and
shown in a sandboxed frame.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InputDataError
from ..serve.jobs import JobNotFound
from ..serve.validation import require_valid_unicode

REPORT_ID = re.compile(r"^dr-[0-9a-f]{16}$")
FILE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
#: what a report's HTML may do in the browser: show its inline styles and data: images, nothing else
REPORT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MEDIA = {".html": "text/html; charset=utf-8", ".json": "application/json", ".csv": "text/csv; charset=utf-8",
         ".tsv": "text/tab-separated-values; charset=utf-8", ".jsonl": "application/x-ndjson"}
COLUMN = Field(default="text", min_length=1, max_length=200)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        return require_valid_unicode(data)


class ProfileBody(_Strict):
    upload_id: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")
    text_column: str = COLUMN
    label_column: str | None = Field(default=None, max_length=200)


class CleanBody(ProfileBody):
    pii: Literal["mask", "pseudonymize", "hash", "none"] = "mask"
    dedup: bool = True
    near_dedup: bool = True


class IssuesBody(ProfileBody):
    label_column: str = Field(default="label", min_length=1, max_length=200)  # type: ignore[assignment]
    method: Literal["cl+cma", "cl", "cma", "cl|cma"] = "cl+cma"
    embedder: Literal["auto", "minilm", "char-ngram"] = "auto"


class DriftBody(ProfileBody):
    current_upload_id: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$", description="the newer data")
    embeddings: bool = True
    embedder: Literal["auto", "minilm", "char-ngram"] = "auto"


class DataReports:
    """Runs the tools on uploads and keeps their reports under ``<home>/data-reports/``."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.folder = Path(state.config.resolved_home()) / "data-reports"

    def _records(self, upload_id: str, *columns: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        records, meta = self.state.jobs.upload_records(upload_id)
        missing = [c for c in columns if c and c not in meta["columns"]]
        if missing:
            raise InputDataError(f"upload {meta['filename']!r} has no column {missing[0]!r}; "
                                 f"it has: {', '.join(map(str, meta['columns']))}",
                                 hint="choose the text and label columns among those")
        return records, meta

    def _new(self) -> tuple[str, Path]:
        report_id = "dr-" + secrets.token_hex(8)
        out = self.folder / report_id
        out.mkdir(parents=True)
        return report_id, out

    def _done(self, report_id: str, out: Path, kind: str, meta: dict[str, Any], summary: dict[str, Any],
              html: str, files: dict[str, str]) -> dict[str, Any]:
        (out / "report.html").write_text(html, encoding="utf-8")
        manifest = {"report_id": report_id, "kind": kind, "input": meta["filename"], "rows": meta["rows"],
                    "created": time.time(), "summary": summary, "files": ["report.html", *files]}
        (out / "manifest.json").write_text(json.dumps(manifest, default=str), encoding="utf-8")
        return {**manifest, "html_url": f"/api/data/reports/{report_id}/report.html",
                "downloads": {name: f"/api/data/reports/{report_id}/{name}?download=1"
                              for name in manifest["files"]}}

    def profile(self, req: ProfileBody) -> dict[str, Any]:
        from ..data import profile

        records, meta = self._records(req.upload_id, req.text_column, req.label_column)
        result = profile(records, text_column=req.text_column, label_column=req.label_column)
        report_id, out = self._new()
        (out / "profile.json").write_text(result.to_json(), encoding="utf-8")
        return self._done(report_id, out, "profile", meta, result.stats, result.to_html(), {"profile.json": ""})

    def clean(self, req: CleanBody) -> dict[str, Any]:
        from ..data import clean
        from ..data.report import generic_html

        records, meta = self._records(req.upload_id, req.text_column)
        suffix = Path(meta["filename"]).suffix.lower()
        name = "clean" + (suffix if suffix in (".csv", ".tsv", ".jsonl") else ".jsonl")
        report_id, out = self._new()
        result = clean(records, out / name, audit=out / "audit.jsonl", text_column=req.text_column,
                       pii=req.pii, dedup=req.dedup, near_dedup=req.near_dedup,
                       allow_empty=True)
        summary = {k: v for k, v in result.summary().items() if k not in ("output", "audit")}
        flat = {"rows_in": summary["rows_in"], "rows_out": summary["rows_out"]}
        html = generic_html("Clean report", flat, [("Actions", ["action:reason", "rows"], list(summary["actions"].items())),
                                                  ("PII by type", ["type", "matches"], list(summary["pii"].items()))])
        return self._done(report_id, out, "clean", meta, summary, html, {name: "", "audit.jsonl": ""})

    def label_issues(self, req: IssuesBody) -> dict[str, Any]:
        from ..data import find_label_issues

        records, meta = self._records(req.upload_id, req.text_column, req.label_column)
        result = find_label_issues(records=records, text_column=req.text_column, label_column=req.label_column,
                                   method=req.method, embedder=req.embedder)
        report_id, out = self._new()
        result.save(out / "issues.csv")
        return self._done(report_id, out, "label-issues", meta, result.summary(), result.to_html(),
                          {"issues.csv": ""})

    def drift(self, req: DriftBody) -> dict[str, Any]:
        from ..data import drift

        reference, meta = self._records(req.upload_id, req.text_column, req.label_column)
        current, _ = self._records(req.current_upload_id, req.text_column, req.label_column)
        result = drift(reference, current, text_column=req.text_column, label_column=req.label_column,
                       embeddings=req.embeddings, embedder=req.embedder)
        report_id, out = self._new()
        (out / "drift.json").write_text(json.dumps(result.to_dict(), default=str, indent=2), encoding="utf-8")
        return self._done(report_id, out, "drift", meta, result.to_dict(), result.to_html(), {"drift.json": ""})

    def file(self, report_id: str, name: str) -> Path:
        """A report's file, only by the names its manifest lists (no paths from the request)."""
        manifest = self.folder / report_id / "manifest.json" if REPORT_ID.match(report_id) else None
        if manifest is None or not manifest.is_file() or not FILE_NAME.match(name):
            raise JobNotFound(f"no data report {report_id!r}", hint="run a tool on the data page first")
        if name not in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
            raise JobNotFound(f"report {report_id} has no file {name!r}")
        return self.folder / report_id / name

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        found = []
        for manifest in self.folder.glob("dr-*/manifest.json"):
            try:
                found.append(json.loads(manifest.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        found.sort(key=lambda m: -m.get("created", 0))
        return [{k: m.get(k) for k in ("report_id", "kind", "input", "rows", "created", "files")} for m in found[:limit]]


def build_data_router(state: Any, pages: Any) -> APIRouter:
    router = APIRouter()
    reports = DataReports(state)
    limiter = anyio.CapacityLimiter(2)

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    @router.get("/data", include_in_schema=False)
    async def data_page(request: Request) -> HTMLResponse:
        return pages.render("data.html", request)

    @router.post("/api/data/profile", tags=["data"])
    async def profile(req: ProfileBody) -> dict[str, Any]:
        """Profile an upload: counts, duplicates, languages, encoding problems, lengths, labels, PII."""
        return await in_thread(reports.profile, req)

    @router.post("/api/data/clean", tags=["data"])
    async def clean(req: CleanBody) -> dict[str, Any]:
        """Clean an upload (encoding, whitespace, PII, exact and near duplicates): file, audit, report."""
        return await in_thread(reports.clean, req)

    @router.post("/api/data/label-issues", tags=["data"])
    async def label_issues(req: IssuesBody) -> dict[str, Any]:
        """Rows whose label looks wrong (confident learning and CMA), ranked."""
        return await in_thread(reports.label_issues, req)

    @router.post("/api/data/drift", tags=["data"])
    async def drift(req: DriftBody) -> dict[str, Any]:
        """Drift of a newer upload against a reference upload (labels, lengths, embeddings)."""
        return await in_thread(reports.drift, req)

    @router.get("/api/data/reports", tags=["data"])
    async def list_reports(limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        return {"reports": await in_thread(reports.list, limit)}

    @router.get("/api/data/reports/{report_id}/{name}", tags=["data"])
    async def report_file(report_id: str, name: str, download: bool = False) -> FileResponse:
        """A report's HTML (sandboxed) or one of its downloads."""
        path = reports.file(report_id, name)
        headers = {"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"}
        media = MEDIA.get(path.suffix, "application/octet-stream")
        if download or path.suffix != ".html":
            headers["Content-Disposition"] = f'attachment; filename="{report_id}-{name}"'
        return FileResponse(path, media_type=media, headers=headers)

    return router
