"""OpenAI-style JSON errors: ``{"error": {"message", "type", "param", "code"}}`` for every failure.

A client's mistake is always a 4xx with a message that says what to change; only a fault of the server itself is
a 5xx, and its message never carries internals (the traceback goes to the server log).
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.serving")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "overloaded_error",
}
ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    503: "queue_full",
}


class APIError(Exception):
    """A request the server refuses, with the status, machine-readable code and message the client gets."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


def error_response(status: int, message: str, code: str | None = None, param: str | None = None, headers=None):
    body = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code or ERROR_CODES.get(status),
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def upload_too_large_message(max_bytes: int) -> str:
    return f"The upload is larger than this server accepts ({max_bytes / 1024 / 1024:g} MB)."


def _field_name(location: tuple) -> str | None:
    names = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(names) or None


async def _api_error(request: Request, error: APIError):
    return error_response(error.status, error.message, error.code, error.param, error.headers)


async def _validation_error(request: Request, error: RequestValidationError):
    problems = error.errors()
    first = problems[0] if problems else {}
    field = _field_name(tuple(first.get("loc", ())))
    missing = first.get("type") == "missing"
    if missing:
        message = f"Missing required field '{field}'."
    else:
        message = f"Invalid value for '{field}': {first.get('msg', 'invalid')}."
    if len(problems) > 1:
        others = sorted({_field_name(tuple(problem.get("loc", ()))) or "?" for problem in problems[1:]} - {field})
        if others:
            message += f" Also check: {', '.join(others)}."
    return error_response(400, message, "missing_field" if missing else "invalid_value", field)


async def _http_error(request: Request, error: HTTPException):
    if error.status_code == 413:
        message = upload_too_large_message(request.app.state.settings.max_upload_bytes)
    elif error.status_code == 404:
        message = f"No route {request.method} {request.url.path}. See /docs for the API."
    else:
        message = str(error.detail) if error.detail else HTTPStatus(error.status_code).phrase
    return error_response(error.status_code, message, headers=getattr(error, "headers", None))


async def _unexpected_error(request: Request, error: Exception):
    logger.exception("internal error while serving %s %s", request.method, request.url.path)
    return error_response(
        500, "The server failed to process the request; the error has been logged.", "internal_error"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
