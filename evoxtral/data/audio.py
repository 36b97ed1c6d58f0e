"""Audio decoding shared by training, evaluation, data generation and the server.

Everything reaches the model as 16 kHz mono float32, cut into 30 s chunks (Voxtral's input contract: one
(128, 3000) log-mel row per chunk, 375 audio tokens each). Decoding goes through soundfile (libsndfile reads
wav, flac, ogg and mp3) and resampling through soxr, the two libraries mistral-common's `audio` extra brings.
"""

from __future__ import annotations

import io
import math
import os
import struct
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLING_RATE = 16_000
CHUNK_SECONDS = 30
CHUNK_SAMPLES = SAMPLING_RATE * CHUNK_SECONDS
AUDIO_TOKENS_PER_CHUNK = 375

# An mp3 stream declares its length up front; a few frames of encoder delay may be missing when decoded.
_MP3_FRAME_SAMPLES = 1152
_TRUNCATION_TOLERANCE_FRAMES = 4 * _MP3_FRAME_SAMPLES
# Streaming WAV writers put a placeholder in the data size when they do not know the length yet: 0xFFFFFFFF
# (ffmpeg to a pipe), 0x7FFFF000 (espeak-ng --stdout). Sizes from 2 GB up are taken as such placeholders.
_PLACEHOLDER_DATA_SIZE_FROM = 0x7FFF0000

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class AudioDecodeError(ValueError):
    """The input is empty, not audio, or cut short; the message says which."""


class UnsupportedAudioFormat(AudioDecodeError):
    """Audio in a container libsndfile does not decode (MP4/M4A, WebM, ...): the message names it."""


class AudioTooLong(AudioDecodeError):
    """The audio lasts longer than the caller allows; raised from the header, before decoding."""


# Containers libsndfile cannot read, by their first bytes: naming them tells a user to convert, not to re-upload.
_UNSUPPORTED_CONTAINERS = (
    ("MP4/M4A", lambda data: data[4:8] == b"ftyp"),
    ("WebM/Matroska", lambda data: data[:4] == b"\x1a\x45\xdf\xa3"),
    ("AAC (ADTS)", lambda data: data[:2] in (b"\xff\xf1", b"\xff\xf9")),
    ("AMR", lambda data: data[:5] == b"#!AMR"),
    ("ASF/WMA", lambda data: data[:4] == b"\x30\x26\xb2\x75"),
)


def load_audio(
    source: AudioSource, sampling_rate: int = SAMPLING_RATE, *, max_seconds: float | None = None
) -> np.ndarray:
    """Decode a path, bytes or a file object into mono float32 samples at `sampling_rate`.

    max_seconds: refuse longer audio (`AudioTooLong`) from its header, before spending memory on decoding it.
    """
    data, name = _read_bytes(source)
    if not data:
        raise AudioDecodeError(f"{name} is empty (0 bytes)")
    _check_riff_not_truncated(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as sound:
            declared_frames = sound.frames
            source_rate = sound.samplerate
            if max_seconds is not None and source_rate > 0 and declared_frames / source_rate > max_seconds:
                raise AudioTooLong(
                    f"{name} lasts {declared_frames / source_rate:.1f} s, more than the {max_seconds:g} s allowed"
                )
            samples = sound.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        container = next((label for label, matches in _UNSUPPORTED_CONTAINERS if matches(data)), None)
        if container is not None:
            raise UnsupportedAudioFormat(
                f"{name} is {container} audio, which libsndfile cannot decode: convert it to WAV, FLAC, Ogg or MP3"
            ) from error
        raise AudioDecodeError(f"{name} is not a readable audio file ({error.error_string})") from error
    if declared_frames > 0 and len(samples) + _TRUNCATION_TOLERANCE_FRAMES < declared_frames:
        raise AudioDecodeError(
            f"{name} is truncated: its header declares {declared_frames} frames but only {len(samples)} decode"
        )
    return to_model_audio(samples, source_rate, sampling_rate, name=name)


def to_model_audio(
    samples: np.ndarray, source_rate: int, sampling_rate: int = SAMPLING_RATE, *, name: str = "audio"
) -> np.ndarray:
    """Mix down to mono, check, and resample an already decoded array ((frames,) or (frames, channels))."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioDecodeError(f"{name} has shape {samples.shape}; expected (frames,) or (frames, channels)")
    if samples.size == 0:
        raise AudioDecodeError(f"{name} holds no audio samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError(f"{name} holds NaN or infinite samples")
    if source_rate <= 0:
        raise AudioDecodeError(f"{name} has an invalid sampling rate {source_rate}")
    if source_rate != sampling_rate:
        samples = soxr.resample(samples, source_rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode_audio_value(value: Any, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Turn whatever a dataset row or a caller holds into model audio.

    Accepts a decoded `{"array", "sampling_rate"}` dict (what `datasets.Audio` yields), an undecoded
    `{"bytes", "path"}` dict (`datasets.Audio(decode=False)`, which needs no torchcodec), a decoder object that
    answers `["array"]`/`["sampling_rate"]`, a bare array (taken to be at `sampling_rate` already), or anything
    `load_audio` reads.
    """
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return to_model_audio(np.asarray(value), sampling_rate, sampling_rate)
    if isinstance(value, dict):
        if value.get("array") is not None:
            return to_model_audio(value["array"], int(value["sampling_rate"]), sampling_rate)
        if value.get("bytes"):
            return load_audio(value["bytes"], sampling_rate)
        if value.get("path"):
            return load_audio(value["path"], sampling_rate)
        raise AudioDecodeError(f"audio value has neither array, bytes nor path: keys {sorted(value)}")
    if hasattr(value, "__getitem__") and not isinstance(value, (str, bytes, bytearray, memoryview)):
        return to_model_audio(value["array"], int(value["sampling_rate"]), sampling_rate)
    return load_audio(value, sampling_rate)


def encode_wav(samples: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """16-bit PCM WAV bytes of mono samples: the form clips are stored in (datasets' Audio reads it back as is)."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sampling_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def num_chunks(num_samples: int) -> int:
    """Number of 30 s chunks Voxtral splits a clip into (at least one)."""
    return max(1, math.ceil(num_samples / CHUNK_SAMPLES))


def num_audio_tokens(num_samples: int) -> int:
    """Number of `[AUDIO]` placeholders the prompt holds for a clip of this many 16 kHz samples."""
    return num_chunks(num_samples) * AUDIO_TOKENS_PER_CHUNK


def _read_bytes(source: AudioSource) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "audio bytes"
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return handle.read(), os.fspath(source)
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise AudioDecodeError("audio file object is opened in text mode; open it with 'rb'")
        return data, getattr(source, "name", "audio file object")
    raise AudioDecodeError(f"cannot read audio from a {type(source).__name__}")


def _check_riff_not_truncated(data: bytes, name: str) -> None:
    """libsndfile quietly reads what is left of a cut WAV; its `data` chunk size tells how much is missing."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return
    byte_order = "<" if data[:4] == b"RIFF" else ">"
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        (chunk_size,) = struct.unpack(byte_order + "I", data[position + 4 : position + 8])
        body_start = position + 8
        if chunk_id == b"data":
            if chunk_size < _PLACEHOLDER_DATA_SIZE_FROM and body_start + chunk_size > len(data):
                raise AudioDecodeError(
                    f"{name} is truncated: its WAV data chunk declares {chunk_size} bytes but "
                    f"{len(data) - body_start} are present"
                )
            return
        position = body_start + chunk_size + (chunk_size & 1)
