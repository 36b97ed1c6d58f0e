"""The transcription API: ``GET /health``, ``POST /transcribe`` (native), ``POST /transcribe-diarize`` (speakers)
and ``POST /v1/audio/transcriptions`` (OpenAI-compatible, streaming), built by ``create_app(settings)``.

A request's life: the auth middleware checks the API key before any body is read; the route takes one of the
bounded request slots (503 + Retry-After when none is free); the body is streamed under the size limit (413 as soon
as it is exceeded) into a private temporary directory; the upload is decoded to 16 kHz mono, checked, cut into
speech segments by silero-vad (and by speaker, when asked), and the segments join the shared micro-batching queue to
the model. The pieces: middleware.py, uploads.py, pipeline.py, routes.py, streaming.py.
"""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from anyio import CapacityLimiter
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from evoxtral import __version__
from evoxtral.serving.batching import MicroBatcher
from evoxtral.serving.errors import install_error_handlers
from evoxtral.serving.middleware import OPEN_PATHS, BearerAuthMiddleware, UploadSizeLimitMiddleware
from evoxtral.serving.pipeline import LazyDiarizer
from evoxtral.serving.routes import build_routes, served_name
from evoxtral.serving.segmentation import SpeechSegmenter
from evoxtral.serving.settings import ServeSettings
from evoxtral.serving.transcriber import Transcriber, load_model_transcriber
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.serving")


def load_engine(settings: ServeSettings) -> Transcriber:
    """What decodes, by ``settings.engine``: the model in this process, or a client of a vLLM server."""
    if settings.engine == "vllm":
        from evoxtral.serving.vllm_engine import load_vllm_transcriber

        return load_vllm_transcriber(settings)
    return load_model_transcriber(settings)


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
        batcher = model_transcriber = None
        try:
            if transcriber is None:
                logger.info("loading model %s (adapter: %s)", settings.model, settings.adapter or "none")
            model_transcriber = transcriber or await run_in_threadpool(load_engine, settings)
            # Decoding and VAD are CPU-bound: more threads than cores only multiply the decoded audio held in memory.
            app.state.cpu_limiter = CapacityLimiter(os.cpu_count() or 1)
            app.state.segmenter = SpeechSegmenter(settings.max_segment_s, settings.merge_gap_s, settings.vad_threshold)
            app.state.diarizer = LazyDiarizer(settings.diarizer, settings.max_speakers)
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
            # A transcriber that holds something outside this process (the vLLM server it started) lets it go.
            if transcriber is None and callable(getattr(model_transcriber, "close", None)):
                model_transcriber.close()
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

    app.include_router(build_routes(settings))
    # Optional routers (e.g. facial emotion recognition at POST /fer) are mounted here.
    include_routers(app, [*settings.router_specs, *routers])
    return app
