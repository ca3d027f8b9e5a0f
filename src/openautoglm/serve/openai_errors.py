"""Errors of the OpenAI-compatible API, answered in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``: :class:`APIError`, the mapping of
backend exceptions to it, and the app's exception handlers."""

from __future__ import annotations

from ..errors import BackendError, EndpointUnavailable
from ..redact import mask_text

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the server needs FastAPI and uvicorn: pip install 'openautoglm[server]'") from exc


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def _backend_error(exc: Exception) -> APIError:
    """Map a backend's exception to an API error (503 when retrying may help)."""
    if isinstance(exc, EndpointUnavailable):
        return APIError(503, mask_text(str(exc)), "server_error", "backend_unavailable")
    if isinstance(exc, NotImplementedError):
        return APIError(400, mask_text(str(exc)) or "not supported by this model", code="unsupported")
    if isinstance(exc, BackendError):
        return APIError(400, mask_text(str(exc)), code="backend_error")
    return APIError(500, mask_text(f"{type(exc).__name__}: {exc}"), "server_error", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{param or 'body'}: {str(first.get('msg', 'invalid request')).removeprefix('Value error, ')}"
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return APIError(exc.status_code, str(exc.detail), kind).response()

