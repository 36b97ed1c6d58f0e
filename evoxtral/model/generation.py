"""What transcription and k-sample decoding share: the prompt-only, left-padded collator, eval mode while
generating, and cutting the continuations off the generated rows.

Left padding puts every prompt's last token in the same column, so every row's continuation starts at the same
position and one slice takes them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import VoxtralProcessor

from evoxtral.model.collator import VoxtralTranscriptionCollator


def generation_collator(
    processor: VoxtralProcessor, language: str | None = "en", feature_device: str = "cpu"
) -> VoxtralTranscriptionCollator:
    """Prompts only (no labels), padded on the left; audio that does not decode raises, naming the input."""
    return VoxtralTranscriptionCollator(
        processor,
        text_column=None,
        padding_side="left",
        language=language,
        skip_bad_audio=False,
        feature_device=feature_device,
    )


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode inside the block and back in its own mode after it (a training callback generates in
    the middle of training)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def decode_continuations(processor: VoxtralProcessor, generated: torch.Tensor, prompt_length: int) -> list[str]:
    """The text each row generated after its prompt, without special tokens or surrounding spaces."""
    texts = processor.tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)
    return [text.strip() for text in texts]
