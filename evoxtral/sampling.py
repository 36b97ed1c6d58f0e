"""k sampled transcripts per clip, for RAFT's best-of-k selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import VoxtralProcessor, set_seed

from evoxtral.inference import transcribe


def sample_transcripts(
    model: torch.nn.Module,
    processor: VoxtralProcessor,
    audios: Sequence[Any],
    *,
    k: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int | None = None,
    language: str | None = "en",
    progress: bool = True,
) -> list[list[str]]:
    """k transcripts per audio, sampled with temperature and nucleus (top_p) sampling; batches span inputs."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if seed is not None:
        set_seed(seed)
    transcripts = transcribe(
        model,
        processor,
        audios,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        language=language,
        progress=progress,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        num_return_sequences=k,
    )
    return [[text] for text in transcripts] if k == 1 else transcripts
