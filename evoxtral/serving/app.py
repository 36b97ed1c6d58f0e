"""The transcription API: ``GET /health``, ``POST /transcribe`` (native) and ``POST /v1/audio/transcriptions``
(OpenAI-compatible), built by ``create_app(settings)``.

A request's life: the auth middleware checks the API key before any body is read; the route takes one of the
bounded request slots (503 + Retry-After when none is free); the body is streamed under the size limit (413 as soon
as it is exceeded) into a private temporary directory; the upload is decoded to 16 kHz mono, checked, cut into
speech segments by silero-vad, and the segments join the shared micro-batching queue to the model.
"""

from __future__ import annotations

import copy
import hmac
import importlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import uvicorn
from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evoxtral import __version__
from evoxtral.data.audio import AudioDecodeError, AudioTooLong, UnsupportedAudioFormat, load_audio
from evoxtral.serving.batching import MicroBatcher, QueueFull
from evoxtral.serving.errors import APIError, error_response, install_error_handlers, upload_too_large_message
from evoxtral.serving.results import (
    RESPONSE_FORMATS,
    TimedText,
    full_text,
    native_result,
    srt,
    verbose_json_result,
    vtt,
)
from evoxtral.serving.segmentation import SAMPLING_RATE, SpeechSegmenter, is_silent
from evoxtral.serving.settings import ServeSettings, language_code
from evoxtral.serving.transcriber import DecodingOptions, Transcriber, load_model_transcriber
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.serving")

# Paths anyone may read even when an API key is configured: liveness and the API's own documentation.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


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
    """A route that holds one of the batcher's request slots from before its body is read until it answers."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def queued_handler(request: Request) -> Response:
            batcher: MicroBatcher = request.app.state.batcher
            try:
                with batcher.admit():
                    return await handler(request)
            except QueueFull as full:
                return error_response(
                    503,
                    f"The server is busy ({batcher.max_queue} requests in progress). Retry after {full.retry_after_s} s.",
                    headers={"Retry-After": str(full.retry_after_s)},
                )

        return queued_handler


def uvicorn_log_config(level: str) -> dict:
    """uvicorn's logging setup with this package's logger added, so start-up and error lines share its format."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["evoxtral"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def include_routers(app: FastAPI, specs: Sequence[str | APIRouter]) -> None:
    """Mount extra routers given as APIRouter objects or "module:attribute" strings (e.g. "my_package.routes:router")."""
    for spec in specs:
        router = spec
        if isinstance(spec, str):
            module_name, _, attribute = spec.partition(":")
            router = getattr(importlib.import_module(module_name), attribute or "router")
        app.include_router(router)
        logger.info("mounted router %s", spec)


def served_name(model: str | None) -> str | None:
    """A model as clients see it: a hub id or built-in name as is, a local folder by its name only (no server
    paths in answers)."""
    return Path(model).name if model and Path(model).exists() else model


def _request_language(language: str | None, default: str | None) -> str | None:
    if language is None or not language.strip():
        return default
    try:
        return language_code(language)
    except ValueError as error:
        raise APIError(400, "invalid_language", f"{error}.", "language") from error


async def _save_upload(upload: UploadFile, directory: Path) -> Path:
    suffix = Path(upload.filename or "").suffix
    handle = tempfile.NamedTemporaryFile(
        dir=directory, suffix=suffix if _SAFE_SUFFIX.match(suffix) else "", delete=False
    )
    with handle:
        await run_in_threadpool(shutil.copyfileobj, upload.file, handle)
    return Path(handle.name)


def _decode_checked(path: Path, client_name: str, settings: ServeSettings) -> np.ndarray:
    if path.stat().st_size == 0:
        raise APIError(400, "empty_file", "The uploaded file is empty.", "file")
    try:
        audio = load_audio(path, sampling_rate=SAMPLING_RATE, max_seconds=settings.max_duration_s)
    except AudioDecodeError as error:
        # The decoder names the file it read: show the client its own file name, not the server's temporary path.
        message = str(error).replace(str(path), repr(client_name))
        if isinstance(error, UnsupportedAudioFormat):
            raise APIError(415, "unsupported_format", message, "file") from error
        if isinstance(error, AudioTooLong):
            raise APIError(400, "audio_too_long", message, "file") from error
        raise APIError(400, "invalid_audio", f"The file could not be decoded as audio: {message}", "file") from error
    duration = audio.size / SAMPLING_RATE
    if duration > settings.max_duration_s:  # a header that understated the length
        raise APIError(
            400,
            "audio_too_long",
            f"The audio lasts {duration:.1f} s; this server accepts at most {settings.max_duration_s:g} s.",
            "file",
        )
    if is_silent(audio):
        raise APIError(400, "silent_audio", "The audio is silent: there is nothing to transcribe.", "file")
    return audio


async def _transcribe_upload(request: Request, upload: UploadFile, options: DecodingOptions):
    """Decode, segment and transcribe one upload; returns (segments with times and text, duration in seconds)."""
    state = request.app.state
    path = await _save_upload(upload, state.upload_dir)
    try:
        audio = await to_thread.run_sync(
            _decode_checked, path, upload.filename or "upload", state.settings, limiter=state.cpu_limiter
        )
    finally:
        path.unlink(missing_ok=True)
    segments = await to_thread.run_sync(state.segmenter, audio, limiter=state.cpu_limiter)
    texts = await state.batcher.transcribe([audio[segment.start : segment.end] for segment in segments], options)
    timed = [TimedText(segment.start_s, segment.end_s, text) for segment, text in zip(segments, texts)]
    return timed, audio.size / SAMPLING_RATE


def _build_routes(settings: ServeSettings) -> APIRouter:
    router = APIRouter(route_class=QueuedRoute)

    @router.post("/transcribe", summary="Tagged transcript with plain text, tags, timed segments and emotions")
    async def transcribe_native(
        request: Request,
        file: Annotated[UploadFile, File(description="audio: wav, flac, ogg or mp3, any rate and channel count")],
        language: Annotated[str | None, Form(description="ISO 639-1 code; omitted: the server's --language")] = None,
    ) -> dict:
        language = _request_language(language, settings.default_language)
        segments, duration = await _transcribe_upload(request, file, DecodingOptions(language=language))
        return native_result(segments, duration, language, served_name(settings.model))

    @router.post(
        "/v1/audio/transcriptions",
        summary="OpenAI-compatible transcription (json, text, srt, vtt, verbose_json)",
        response_model=None,
    )
    async def transcribe_openai(
        request: Request,
        file: Annotated[UploadFile, File(description="audio: wav, flac, ogg or mp3, any rate and channel count")],
        model: Annotated[str | None, Form(description="accepted for compatibility; the loaded model answers")] = None,
        language: Annotated[str | None, Form(description="ISO 639-1 code; omitted: the server's --language")] = None,
        prompt: Annotated[
            str | None, Form(description="accepted for compatibility; Voxtral's transcription mode takes no prompt")
        ] = None,
        temperature: Annotated[float, Form(ge=0.0, le=1.0, description="0 decodes greedily")] = 0.0,
        response_format: Annotated[Literal[RESPONSE_FORMATS], Form()] = "json",
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        stream: Annotated[bool, Form(description="streaming is not supported")] = False,
    ) -> Response | dict:
        language = _request_language(language, settings.default_language)
        if stream:
            raise APIError(400, "unsupported_value", "Streaming transcription is not supported.", "stream")
        if timestamp_granularities and set(timestamp_granularities) - {"segment"}:
            raise APIError(
                400, "unsupported_value", "Only segment timestamps are available.", "timestamp_granularities[]"
            )
        options = DecodingOptions(language=language, temperature=temperature)
        segments, duration = await _transcribe_upload(request, file, options)
        if response_format == "json":
            return {"text": full_text(segments)}
        if response_format == "verbose_json":
            return verbose_json_result(segments, duration, language, temperature)
        if response_format == "srt":
            return PlainTextResponse(srt(segments))
        if response_format == "vtt":
            return PlainTextResponse(vtt(segments), media_type="text/vtt")
        return PlainTextResponse(full_text(segments))

    return router


def _openapi_with_bearer(app: FastAPI):
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(
    settings: ServeSettings | None = None,
    transcriber: Transcriber | None = None,
    routers: Sequence[str | APIRouter] = (),
) -> FastAPI:
    """The API. ``transcriber`` replaces the model named by ``settings`` (loaded at start-up when omitted);
    ``routers`` are mounted next to the transcription routes, after those named in ``settings.routers``."""
    settings = settings or ServeSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        upload_dir = Path(tempfile.mkdtemp(prefix="evoxtral-uploads-"))
        batcher = None
        try:
            if transcriber is None:
                logger.info("loading model %s (adapter: %s)", settings.model, settings.adapter or "none")
            model_transcriber = transcriber or await run_in_threadpool(load_model_transcriber, settings)
            # Decoding and VAD are CPU-bound: more threads than cores only multiply the decoded audio held in memory.
            app.state.cpu_limiter = CapacityLimiter(os.cpu_count() or 1)
            app.state.segmenter = SpeechSegmenter(settings.max_segment_s, settings.merge_gap_s, settings.vad_threshold)
            batcher = MicroBatcher(model_transcriber, settings.max_batch, settings.max_wait_ms, settings.max_queue)
            await batcher.start()
            app.state.batcher = batcher
            app.state.upload_dir = upload_dir
            if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
                logger.warning(
                    "listening on %s without an API key: anyone who can reach this port can use the model "
                    "(set EVOXTRAL_API_KEY)",
                    settings.host,
                )
            logger.info(
                "ready: model %s, API key %s, uploads up to %g MB in %s",
                settings.model,
                "required" if settings.api_key else "not required",
                settings.max_upload_mb,
                upload_dir,
            )
            yield
        finally:
            if batcher is not None:
                await batcher.stop()
            shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(
        title="Evoxtral transcription API",
        version=__version__,
        description=(
            "Expressive tagged transcription: transcripts carry inline audio tags such as [laughs] or [sighs] and "
            'CAPITALISED emphasis. Errors are JSON: {"error": {"message", "type", "param", "code"}}.'
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(UploadSizeLimitMiddleware, max_body_size=settings.max_upload_bytes)
    if settings.api_key:  # added last, so it runs first: nothing of an unauthenticated request is read
        app.add_middleware(BearerAuthMiddleware, api_key=settings.api_key)
    app.openapi = _openapi_with_bearer(app)

    @app.get("/health", summary="Liveness, the loaded model and the queue's state")
    async def health(request: Request) -> dict:
        batcher: MicroBatcher = request.app.state.batcher
        return {
            "status": "ok",
            "model": served_name(settings.model),
            "adapter": served_name(settings.adapter),
            "active_requests": batcher.active_requests,
            "max_queue": batcher.max_queue,
            "queued_segments": batcher.queued_segments,
            "batches_run": batcher.batches_run,
            "segments_transcribed": batcher.segments_done,
        }

    app.include_router(_build_routes(settings))
    # Optional routers (e.g. facial emotion recognition at POST /fer) are mounted here.
    include_routers(app, [*settings.router_specs, *routers])
    return app
