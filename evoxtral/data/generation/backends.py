"""The speech backend interface, the retry policy every backend shares, and the check on what comes back.

A backend turns one tagged script and one voice into encoded audio bytes. Everything else (retries with
backoff, rejecting empty, silent or corrupt audio, concurrency, caching) is done once, here and in the
pipeline, for every backend alike.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE, AudioDecodeError, load_audio


class SynthesisError(Exception):
    """A synthesis that will fail again if repeated (bad voice, rejected text, missing key)."""


class TransientSynthesisError(SynthesisError):
    """A synthesis worth retrying (rate limit, server error, timeout, unusable audio)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SynthesisRequest:
    text: str  # the tagged script, as the backend should read it
    voice: str


class SpeechBackend(Protocol):
    name: str
    voices: list[str]
    concurrency: int

    def settings(self) -> dict:
        """Everything besides text and voice that changes the audio; part of each clip's cache key."""

    def synthesize(self, request: SynthesisRequest) -> bytes:
        """Encoded audio (any format ``evoxtral.data.audio.load_audio`` reads); raises SynthesisError."""


def clip_key(backend: SpeechBackend, request: SynthesisRequest) -> str:
    """Content hash naming a clip: same text, voice, backend and settings -> same clip, never paid for twice."""
    payload = json.dumps(
        {"backend": backend.name, "settings": backend.settings(), "voice": request.voice, "text": request.text},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AudioCheck:
    min_duration_s: float = 0.3
    min_peak: float = 0.01  # below -40 dBFS peak there is nothing a listener (or a model) could hear

    def problems(self, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[str]:
        if audio.size == 0:
            return ["empty audio"]
        if not np.all(np.isfinite(audio)):
            return ["corrupt audio (non-finite samples)"]
        problems = []
        if audio.size / sampling_rate < self.min_duration_s:
            problems.append(f"too short ({audio.size / sampling_rate:.2f} s)")
        if float(np.max(np.abs(audio))) < self.min_peak:
            problems.append("silent audio")
        return problems


def decode_and_check(data: bytes, check: AudioCheck) -> np.ndarray:
    """Backend bytes -> 16 kHz mono float32, or a TransientSynthesisError saying what is wrong with them."""
    if not data:
        raise TransientSynthesisError("empty response")
    try:
        audio = load_audio(data, sampling_rate=SAMPLING_RATE)
    except AudioDecodeError as error:
        raise TransientSynthesisError(f"corrupt audio ({error})") from error
    problems = check.problems(audio)
    if problems:
        raise TransientSynthesisError("; ".join(problems))
    return audio


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)
        return min(self.max_delay_s, max(backoff, retry_after or 0.0))


def synthesize_checked(
    backend: SpeechBackend,
    request: SynthesisRequest,
    policy: RetryPolicy,
    check: AudioCheck,
    sleep=time.sleep,
) -> tuple[np.ndarray, int]:
    """Synthesise, decode and check, retrying transient failures; returns the audio and the attempts used."""
    rng = random.Random(request.text)
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return decode_and_check(backend.synthesize(request), check), attempt
        except TransientSynthesisError as error:
            if attempt == policy.max_attempts:
                raise SynthesisError(f"{error} (after {attempt} attempts)") from error
            sleep(policy.delay(attempt, error.retry_after, rng))
    raise AssertionError("unreachable")
