"""What runs around every request before a route sees it: the API key check, the upload size limit (both before
the body is read), and the request slots of the bounded queue, held until the answer is sent, a streamed answer's
last event included."""

from __future__ import annotations

import hmac
from contextlib import ExitStack

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evoxtral.serving.batching import MicroBatcher, QueueFull
from evoxtral.serving.errors import error_response, upload_too_large_message

# Paths anyone may read even when an API key is configured: liveness and the API's own documentation.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <key>`` on every path outside OPEN_PATHS, before the body is read."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            message = "Invalid API key." if given else "Missing API key: send 'Authorization: Bearer <key>'."
            response = error_response(401, message, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class UploadSizeLimitMiddleware:
    """Refuses a request body over ``max_body_size`` while it streams in, before it is stored anywhere.

    A declared Content-Length over the limit is refused before reading; otherwise bytes are counted as they
    arrive and the read fails at the first chunk past the limit. (Starlette's own limiter answers in plain text,
    which OpenAI clients cannot read as an error; this one answers in the API's JSON error format.)
    """

    def __init__(self, app: ASGIApp, max_body_size: int):
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_size:
            response = error_response(413, upload_too_large_message(self.max_body_size))
            return await response(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_size:
                raise HTTPException(413)
            return message

        return await self.app(scope, counting_receive, send)


class QueuedRoute(APIRoute):
    """A route that holds one of the batcher's request slots from before its body is read until it answers; for a
    streamed answer, until its last event is sent (or the client goes away)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def queued_handler(request: Request) -> Response:
            batcher: MicroBatcher = request.app.state.batcher
            try:
                with ExitStack() as slot:
                    slot.enter_context(batcher.admit())
                    response = await handler(request)
                    if isinstance(response, StreamingResponse):
                        response.body_iterator = _released_after(response.body_iterator, slot.pop_all())
                    return response
            except QueueFull as full:
                return error_response(
                    503,
                    f"The server is busy ({batcher.max_queue} requests in progress). Retry after {full.retry_after_s} s.",
                    headers={"Retry-After": str(full.retry_after_s)},
                )

        return queued_handler


async def _released_after(body, slot: ExitStack):
    with slot:
        async for chunk in body:
            yield chunk
