"""What the server needs from a model: a callable from a batch of 16 kHz mono clips to one transcript each.

A transcriber returns plain strings or `SegmentTranscript`s (text plus the token ids and their mean
log-probability, which verbose_json reports). One that also takes an ``on_text`` keyword streams: it calls
``on_text(row, new_text)`` from its thread as each row's text grows, and the server forwards the pieces to streaming
clients token by token; any other transcriber streams a whole segment at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evoxtral.serving.settings import ServeSettings


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # ISO 639-1 code; None lets the model detect it
    temperature: float = 0.0  # 0 decodes greedily


@dataclass(frozen=True)
class SegmentTranscript:
    text: str  # the tagged transcript
    tokens: tuple[int, ...] = ()  # the generated token ids, end-of-sequence left out (empty: not reported)
    avg_logprob: float | None = None  # mean log-probability of the generated tokens (None: not reported)


Transcriber = Callable[[Sequence[np.ndarray], DecodingOptions], list[str] | list[SegmentTranscript]]
TextCallback = Callable[[int, str], None]


def streams_text(transcriber: Transcriber) -> bool:
    """Whether the transcriber reports text as it grows (takes ``on_text``)."""
    try:
        return "on_text" in inspect.signature(transcriber).parameters
    except (TypeError, ValueError):
        return False


def as_segment_transcript(result: str | SegmentTranscript) -> SegmentTranscript:
    return result if isinstance(result, SegmentTranscript) else SegmentTranscript(str(result))


def model_transcriber(model: torch.nn.Module, processor, max_new_tokens: int = 512) -> Transcriber:
    """A loaded Voxtral (plain, with an adapter, or merged) as a Transcriber, decoding with `evoxtral.model.inference`
    and watching the decoding with `evoxtral.model.streaming` for token ids, log-probabilities and streamed text."""
    from transformers import LogitsProcessorList

    from evoxtral.model.generation import generation_collator
    from evoxtral.model.inference import transcribe
    from evoxtral.model.streaming import BatchGenerationObserver

    eos_token_id = generation_collator(processor).eos_token_id

    def transcribe_clips(
        clips: Sequence[np.ndarray], decoding: DecodingOptions, on_text: TextCallback | None = None
    ) -> list[SegmentTranscript]:
        sampling = {"do_sample": True, "temperature": decoding.temperature} if decoding.temperature > 0 else {}
        observer = BatchGenerationObserver(processor.tokenizer, eos_token_id, decoding.temperature, on_text)
        texts = transcribe(
            model,
            processor,
            list(clips),
            batch_size=len(clips),
            max_new_tokens=max_new_tokens,
            language=decoding.language,
            progress=False,
            streamer=observer,
            logits_processor=LogitsProcessorList([observer]),
            **sampling,
        )
        return [
            SegmentTranscript(text, tuple(observer.token_ids[row]), observer.average_logprob(row))
            for row, text in enumerate(texts)
        ]

    return transcribe_clips


def load_model_transcriber(settings: ServeSettings) -> Transcriber:
    """Load the model the settings name (base + adapter, or a merged folder) once, as a Transcriber that decodes in
    this process (``engine: transformers``; the vLLM engine is evoxtral.serving.vllm_engine)."""
    from evoxtral.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(
        settings.model, adapter=settings.adapter, dtype=settings.dtype, device=settings.device
    )
    return model_transcriber(model, processor, settings.max_new_tokens)
