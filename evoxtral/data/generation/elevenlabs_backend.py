"""ElevenLabs v3 through the official ``elevenlabs`` SDK.

The key is read from ELEVENLABS_API_KEY and handed to the SDK only: it is never logged, stored, or part of a
clip key. The SDK's own retries are turned off so that the one retry policy (``evoxtral.data.generation.backends``) decides:
429, 408, 5xx, timeouts and dropped connections are retried with backoff (honouring Retry-After), other
errors fail the clip at once.
"""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import soundfile as sf

from evoxtral.data.generation.backends import SynthesisError, SynthesisRequest, TransientSynthesisError

RETRIABLE_STATUS = {408, 409, 429}


def _retry_after(headers: dict | None) -> float | None:
    value = {key.lower(): val for key, val in (headers or {}).items()}.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def pcm_to_wav(data: bytes, output_format: str) -> bytes:
    """``pcm_<rate>`` responses are headerless 16-bit mono samples: give them a WAV header to be decodable."""
    rate = int(output_format.split("_")[1])
    buffer = io.BytesIO()
    sf.write(buffer, np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


class ElevenLabsBackend:
    """Text to speech with ``model_id`` (default eleven_v3), voices given as ElevenLabs voice ids."""

    name = "elevenlabs"

    def __init__(
        self,
        voices: list[str] | None,
        *,
        model_id: str = "eleven_v3",
        output_format: str = "mp3_44100_128",
        base_url: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
    ):
        from elevenlabs.client import ElevenLabs

        if not voices:
            raise ValueError("the elevenlabs backend needs `voices`: a list of ElevenLabs voice ids")
        if not output_format.startswith(("mp3_", "wav_", "pcm_")):
            raise ValueError(f"output_format {output_format!r}: use an mp3_*, wav_* or pcm_* format")
        api_key = os.environ.get("ELEVENLABS_API_KEY")
        if not api_key:
            raise SynthesisError(
                "the elevenlabs backend needs an API key in the ELEVENLABS_API_KEY environment variable"
            )
        self.voices = list(voices)
        self.model_id = model_id
        self.output_format = output_format
        self.base_url = base_url
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.client = ElevenLabs(api_key=api_key, base_url=base_url, timeout=timeout_s)

    def settings(self) -> dict:
        # the endpoint is part of the key so that a test server's audio never passes for the real service's
        return {"model_id": self.model_id, "output_format": self.output_format, "endpoint": self.base_url or "default"}

    def synthesize(self, request: SynthesisRequest) -> bytes:
        from elevenlabs.core.api_error import ApiError

        try:
            stream = self.client.text_to_speech.convert(
                request.voice,
                text=request.text,
                model_id=self.model_id,
                output_format=self.output_format,
                request_options={"max_retries": 0},
            )
            data = b"".join(stream)  # the request goes out while the iterator is consumed
        except ApiError as error:
            status = error.status_code or 0
            if status in RETRIABLE_STATUS or status >= 500:
                raise TransientSynthesisError(f"HTTP {status}", retry_after=_retry_after(error.headers)) from None
            raise SynthesisError(f"HTTP {status}: {str(error.body)[:200]}") from None
        except httpx.TimeoutException:
            raise TransientSynthesisError(f"timed out after {self.timeout_s:.0f} s") from None
        except httpx.TransportError as error:
            raise TransientSynthesisError(f"connection failed ({type(error).__name__})") from None
        return pcm_to_wav(data, self.output_format) if self.output_format.startswith("pcm_") and data else data
