"""What the server needs from a model: a callable from a batch of 16 kHz mono clips to one transcript each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evoxtral.serving.settings import ServeSettings


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # ISO 639-1 code; None lets the model detect it
    temperature: float = 0.0  # 0 decodes greedily


Transcriber = Callable[[Sequence[np.ndarray], DecodingOptions], list[str]]


def model_transcriber(model: torch.nn.Module, processor, max_new_tokens: int = 512) -> Transcriber:
    """A loaded Voxtral (plain, with an adapter, or merged) as a Transcriber, decoding with `evoxtral.model.inference`."""
    from evoxtral.model.inference import transcribe

    def transcribe_clips(clips: Sequence[np.ndarray], decoding: DecodingOptions) -> list[str]:
        sampling = {"do_sample": True, "temperature": decoding.temperature} if decoding.temperature > 0 else {}
        return transcribe(
            model,
            processor,
            list(clips),
            batch_size=len(clips),
            max_new_tokens=max_new_tokens,
            language=decoding.language,
            progress=False,
            **sampling,
        )

    return transcribe_clips


def load_model_transcriber(settings: ServeSettings) -> Transcriber:
    """Load the model the settings name (base + adapter, or a merged folder) once, as a Transcriber."""
    from evoxtral.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(
        settings.model, adapter=settings.adapter, dtype=settings.dtype, device=settings.device
    )
    return model_transcriber(model, processor, settings.max_new_tokens)
