"""The transcription routes: ``POST /transcribe`` (native), ``POST /transcribe-diarize`` (the seed's speaker route)
and ``POST /v1/audio/transcriptions`` (OpenAI-compatible, streaming with ``stream=true``). Each decodes its upload,
plans the segments (with speakers when asked: evoxtral.serving.pipeline) and sends them through the shared
micro-batcher; everything that can be refused is refused before a streamed answer starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from evoxtral.serving.errors import APIError
from evoxtral.serving.middleware import QueuedRoute
from evoxtral.serving.pipeline import TranscriptionPlan, plan_transcription, timed_texts
from evoxtral.serving.results import (
    RESPONSE_FORMATS,
    diarized_json_result,
    full_text,
    native_result,
    seed_diarized_result,
    srt,
    verbose_json_result,
    vtt,
)
from evoxtral.serving.settings import ServeSettings
from evoxtral.serving.streaming import SSE_HEADERS, transcription_events
from evoxtral.serving.transcriber import DecodingOptions
from evoxtral.serving.uploads import read_upload, request_language
from evoxtral.speakers import DiarizerUnavailable

AudioFile = Annotated[UploadFile, File(description="audio: wav, flac, ogg or mp3, any rate and channel count")]
Language = Annotated[str | None, Form(description="ISO 639-1 code; omitted: the server's --language")]
Diarize = Annotated[bool, Form(description="label each segment with its speaker ('Speaker 1' ...)")]
NumSpeakers = Annotated[int | None, Form(ge=1, le=32, description="how many speakers; omitted: estimated")]


def served_name(model: str | None) -> str | None:
    """A model as clients see it: a hub id or built-in name as is, a local folder by its name only (no server
    paths in answers)."""
    return Path(model).name if model and Path(model).exists() else model


async def plan_upload(
    request: Request, upload: UploadFile, diarize: bool = False, num_speakers: int | None = None
) -> TranscriptionPlan:
    """Decode and check the upload, then find its speech (and speakers): every 4xx is raised here."""
    state = request.app.state
    audio = await read_upload(request, upload)
    diarizer = None
    if diarize or num_speakers is not None:
        try:
            diarizer = await to_thread.run_sync(state.diarizer.get)
        except DiarizerUnavailable as error:
            raise APIError(503, "diarizer_unavailable", str(error)) from error
    return await to_thread.run_sync(
        plan_transcription, audio, state.segmenter, diarizer, num_speakers, limiter=state.cpu_limiter
    )


async def transcribe_plan(request: Request, plan: TranscriptionPlan, options: DecodingOptions):
    return timed_texts(plan, await request.app.state.batcher.transcribe(plan.clips, options))


def build_routes(settings: ServeSettings) -> APIRouter:
    router = APIRouter(route_class=QueuedRoute)

    @router.post("/transcribe", summary="Tagged transcript with plain text, tags, timed segments and emotions")
    async def transcribe_native(
        request: Request, file: AudioFile, language: Language = None, diarize: Diarize = False,
        num_speakers: NumSpeakers = None,
    ) -> dict:  # fmt: skip
        language = request_language(language, settings.default_language)
        plan = await plan_upload(request, file, diarize, num_speakers)
        segments = await transcribe_plan(request, plan, DecodingOptions(language=language))
        return native_result(segments, plan.duration, language, served_name(settings.model))

    @router.post(
        "/transcribe-diarize", summary="Speaker-labelled segments with emotions (the original server's shape)"
    )
    async def transcribe_diarize(
        request: Request, file: AudioFile, language: Language = None, num_speakers: NumSpeakers = None
    ) -> dict:
        language = request_language(language, settings.default_language)
        plan = await plan_upload(request, file, diarize=True, num_speakers=num_speakers)
        segments = await transcribe_plan(request, plan, DecodingOptions(language=language))
        return seed_diarized_result(segments, plan.diarization_method)

    @router.post(
        "/v1/audio/transcriptions",
        summary="OpenAI-compatible transcription (json, text, srt, vtt, verbose_json, diarized_json; stream=true)",
        response_model=None,
    )
    async def transcribe_openai(
        request: Request,
        file: AudioFile,
        model: Annotated[str | None, Form(description="accepted for compatibility; the loaded model answers")] = None,
        language: Language = None,
        prompt: Annotated[
            str | None, Form(description="accepted for compatibility; Voxtral's transcription mode takes no prompt")
        ] = None,
        temperature: Annotated[float, Form(ge=0.0, le=1.0, description="0 decodes greedily")] = 0.0,
        response_format: Annotated[Literal[RESPONSE_FORMATS], Form()] = "json",
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        stream: Annotated[bool, Form(description="server-sent events: text deltas, then the whole text")] = False,
        diarize: Diarize = False,
        num_speakers: NumSpeakers = None,
    ) -> Response | dict:
        language = request_language(language, settings.default_language)
        if timestamp_granularities and set(timestamp_granularities) - {"segment"}:
            raise APIError(
                400, "unsupported_value", "Only segment timestamps are available.", "timestamp_granularities[]"
            )
        diarize = diarize or response_format == "diarized_json"
        plan = await plan_upload(request, file, diarize, num_speakers)
        options = DecodingOptions(language=language, temperature=temperature)
        if stream:
            events = transcription_events(request.app.state.batcher, plan, options)
            return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
        segments = await transcribe_plan(request, plan, options)
        return openai_response(response_format, segments, plan.duration, language, temperature)

    return router


def openai_response(response_format: str, segments, duration: float, language: str | None, temperature: float):
    if response_format == "json":
        return {"text": full_text(segments)}
    if response_format == "verbose_json":
        return verbose_json_result(segments, duration, language, temperature)
    if response_format == "diarized_json":
        return diarized_json_result(segments, duration)
    if response_format == "srt":
        return PlainTextResponse(srt(segments))
    if response_format == "vtt":
        return PlainTextResponse(vtt(segments), media_type="text/vtt")
    return PlainTextResponse(full_text(segments))
