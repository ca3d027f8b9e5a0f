"""The server's workbench pages that use the applications: SQL chat and data tools.

This package sits in the layer above the applications (it may import ``serve``, ``sql``,
``data`` and ``optimize``; none of them imports it), so the server stays free of application
imports: ``openautoglm serve`` loads :func:`install` by name (``ServerConfig.extensions``),
as it would a plug-in.  Heavy libraries load when a page is used, not at start-up.
"""

from __future__ import annotations

from typing import Any


def install(app: Any, state: Any) -> None:
    """Add the SQL page (``/sql``, ``/api/sql/...``) and the data page (``/data``, ``/api/data/...``)."""
    from .data_page import build_data_router
    from .sql_page import build_sql_router

    app.include_router(build_sql_router(state, app.state.pages))
    app.include_router(build_data_router(state, app.state.pages))
    nav = app.state.pages.nav
    nav[nav.index(("/monitor", "Monitor")):nav.index(("/monitor", "Monitor"))] = [("/sql", "SQL"), ("/data", "Data")]
