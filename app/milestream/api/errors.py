"""Every answer but a success is a JSON ``ErrorResponse``: bad requests a 4xx with the reason,
never a traceback (an unexpected failure is logged and answered 500 with no detail)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import ValidationError

log = logging.getLogger("milestream.api")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, reasons: Iterable[str] = (), headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reasons = list(reasons)
        self.headers = headers or {}


def validation_reasons(error: ValidationError, prefix: str = "") -> list[str]:
    """One line per broken rule: where, and what."""
    reasons = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in (*([prefix] if prefix else []), *item["loc"])) or "(body)"
        reasons.append(f"{where}: {item['msg']}")
    return reasons


def unavailable(message: str) -> ApiError:
    return ApiError(503, message, headers={"Retry-After": "2"})


def error_response(
    status: int, message: str, reasons: Iterable[str] = (), headers: dict[str, str] | None = None
) -> Any:
    from aiohttp import web

    return web.json_response({"error": message, "reasons": list(reasons)}, status=status, headers=headers)


# What the HTTP server itself answers before any route (aiohttp's parser and handler errors), without
# echoing the request back: aiohttp's own text would quote the request line or a header (a token, too).
PROTOCOL_ERRORS = {
    400: "malformed HTTP request: not HTTP, or a request line or header over 8190 bytes",
    500: "internal error; the worker's log has the details",
    504: "the request took too long",
}


def install_json_protocol_errors() -> None:
    """Make the HTTP server's own error answers (a request it cannot parse) JSON ``ErrorResponse``s
    like every other answer; aiohttp's are plain text quoting the request."""
    from http import HTTPStatus

    from aiohttp import web_protocol

    original = web_protocol.RequestHandler.handle_error
    if getattr(original, "milestream_json", False):
        return

    def handle_error(
        self: Any, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> Any:
        original(self, request, status, exc, message)  # logs, and refuses once a response has started
        text = PROTOCOL_ERRORS.get(status) or HTTPStatus(status).phrase
        answer = error_response(status, text)
        answer.force_close()
        return answer

    handle_error.milestream_json = True  # type: ignore[attr-defined]
    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


def json_errors_middleware() -> Callable[..., Awaitable[Any]]:
    """aiohttp middleware: ApiError and aiohttp's own HTTP errors (404, 405, 413) as JSON."""
    from aiohttp import web

    @web.middleware
    async def json_errors(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.reasons, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = {
                404: f"no such path: {request.path}",
                405: f"{request.method} is not allowed on {request.path}",
                413: "request body too large",
            }.get(exc.status, exc.reason)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, message, headers=headers)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal error; the worker's log has the details")

    return json_errors
