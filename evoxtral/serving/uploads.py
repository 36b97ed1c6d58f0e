"""An upload's way in: the request's language checked, the file streamed to the private upload folder, decoded to
16 kHz mono and checked (empty, undecodable, too long, silent: each a 4xx that names the client's own file)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from anyio import to_thread
from fastapi import Request, UploadFile
from starlette.concurrency import run_in_threadpool

from evoxtral.data.audio import AudioDecodeError, AudioTooLong, UnsupportedAudioFormat, load_audio
from evoxtral.serving.errors import APIError
from evoxtral.serving.segmentation import SAMPLING_RATE, is_silent
from evoxtral.serving.settings import ServeSettings, language_code

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def request_language(language: str | None, default: str | None) -> str | None:
    if language is None or not language.strip():
        return default
    try:
        return language_code(language)
    except ValueError as error:
        raise APIError(400, "invalid_language", f"{error}.", "language") from error


async def save_upload(upload: UploadFile, directory: Path) -> Path:
    suffix = Path(upload.filename or "").suffix
    handle = tempfile.NamedTemporaryFile(
        dir=directory, suffix=suffix if _SAFE_SUFFIX.match(suffix) else "", delete=False
    )
    with handle:
        await run_in_threadpool(shutil.copyfileobj, upload.file, handle)
    return Path(handle.name)


def decode_checked(path: Path, client_name: str, settings: ServeSettings) -> np.ndarray:
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


async def read_upload(request: Request, upload: UploadFile) -> np.ndarray:
    """The upload as checked 16 kHz mono audio; its file is deleted as soon as it is decoded."""
    state = request.app.state
    path = await save_upload(upload, state.upload_dir)
    try:
        return await to_thread.run_sync(
            decode_checked, path, upload.filename or "upload", state.settings, limiter=state.cpu_limiter
        )
    finally:
        path.unlink(missing_ok=True)
