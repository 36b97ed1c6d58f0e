"""k sampled transcripts per clip for RAFT, encoding each clip and prefilling its prompt once.

`generate(num_return_sequences=k)` copies every input k times before the first forward, so the audio encoder,
the projector and the ~380-token prompt prefill all run k times per clip, and the k copies of the prefill
activations sit in memory together. Here each batch of clips is prefilled once (encoder, projector and all
prompt tokens but the last), the prompt's KV cache is repeated k times along the batch (`repeat_interleave`, the
same row order `generate` uses), and `generate` continues from that cache: it feeds the last prompt token, then
samples with its own logits processors (temperature, top-p), so the sampling distribution is `generate`'s.

With a static KV cache (default on CUDA) `generate` compiles the decode step with torch.compile; the cache length
is rounded up so that batches of similar prompts reuse one compiled graph.

This also keeps clips over 30 s right: `generate` repeats `input_features` row by row (one row per 30 s chunk),
so with k > 1 a multi-chunk clip's samples get each other's chunks; fanning out the cache never touches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, StaticCache, VoxtralProcessor
from transformers.generation.utils import GenerateDecoderOnlyOutput

from evoxtral.data.audio import decode_audio_value, num_chunks
from evoxtral.model.generation import decode_continuations, eval_mode, generation_collator

# Static caches are allocated in steps of this many positions, so that batches whose prompts differ by a few
# tokens share one compiled decode graph.
STATIC_CACHE_BUCKET = 256
# Clips are decoded this many batches at a time and sorted by length within that window: memory stays bounded
# while batches hold clips of one chunk count.
GROUPING_WINDOW_BATCHES = 8


def sample_transcripts(
    model: torch.nn.Module,
    processor: VoxtralProcessor,
    audios: Sequence[Any],
    *,
    k: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    seed: int | None = None,
    language: str | None = "en",
    static_cache: bool | None = None,
    compile_decode: bool | None = None,
    progress: bool = True,
    **generate_kwargs,
) -> list[list[str]]:
    """k sampled transcripts for each audio (array at 16 kHz, path, bytes, or a `datasets.Audio` value).

    batch_size: clips per batch (each becomes k rows while decoding). Clips are grouped by their number of 30 s
        chunks so a long clip does not pad a batch of short ones; results come back in input order.
    seed: makes the samples reproducible for the same inputs, batch_size and device (the global RNG state is
        restored afterwards); None draws from the global RNG as it is.
    static_cache / compile_decode: None means on when the model is on CUDA, off elsewhere.
    generate_kwargs: further `generate` settings, e.g. `min_new_tokens` or `repetition_penalty`.
    Bad audio raises `AudioDecodeError` naming the input; the model's train/eval mode is restored afterwards.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    on_cuda = model.device.type == "cuda"
    static_cache = on_cuda if static_cache is None else static_cache
    compile_decode = static_cache and on_cuda if compile_decode is None else compile_decode
    # The log-mel front end runs on the GPU too: on the CPU, one clip at a time, it would hold up the decoding.
    collator = generation_collator(processor, language, feature_device=str(model.device) if on_cuda else "cpu")
    generate_kwargs.update(
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        pad_token_id=collator.pad_token_id,
        eos_token_id=collator.eos_token_id,
        disable_compile=not compile_decode,
    )

    samples: list[list[str]] = [[] for _ in audios]
    with (
        eval_mode(model),
        torch.random.fork_rng(devices=[model.device] if on_cuda else [], enabled=seed is not None),
        tqdm(total=len(audios), desc=f"Sampling {k} per clip", unit="clip", disable=not progress) as bar,
    ):
        if seed is not None:
            torch.manual_seed(seed)
        for indices, clips in _batches_by_chunk_count(audios, batch_size):
            batch = collator([{"audio": clip} for clip in clips])
            generated = generate_fanned_out(model, batch, k=k, static_cache=static_cache, **generate_kwargs)
            texts = decode_continuations(processor, generated, batch["input_ids"].shape[1])
            for row, index in enumerate(indices):
                samples[index] = texts[row * k : (row + 1) * k]
            bar.update(len(indices))
    return samples


@torch.inference_mode()
def generate_fanned_out(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    k: int,
    static_cache: bool = False,
    **generate_kwargs,
) -> torch.LongTensor | GenerateDecoderOnlyOutput:
    """`model.generate(**batch, num_return_sequences=k, **generate_kwargs)`, with the prompt encoded once.

    batch: a left-padded generation batch from `VoxtralTranscriptionCollator` (input_ids, attention_mask,
        input_features). Rows come back as `generate` orders them: the k samples of input 0, then of input 1, ...
    """
    device = model.device
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    # The positions `generate` gives a left-padded prompt; the prefill must write the same ones into the cache.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    prefix = DynamicCache(config=model.config.get_text_config(decoder=True))
    model(
        input_ids=input_ids[:, :-1],
        input_features=batch["input_features"].to(device, model.dtype),
        attention_mask=attention_mask[:, :-1],
        position_ids=position_ids[:, :-1],
        past_key_values=prefix,
        use_cache=True,
        logits_to_keep=1,
    )
    if static_cache:
        needed = input_ids.shape[1] + generate_kwargs["max_new_tokens"]
        cache = StaticCache(
            config=model.config.get_text_config(decoder=True),
            max_cache_len=-(-needed // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET,
        )
        # The first update allocates each layer at k times the batch and writes the prompt into it.
        for layer_index, layer in enumerate(prefix.layers):
            cache.update(layer.keys.repeat_interleave(k, dim=0), layer.values.repeat_interleave(k, dim=0), layer_index)
        del prefix
    else:
        prefix.batch_repeat_interleave(k)
        cache = prefix
    return model.generate(
        input_ids=input_ids.repeat_interleave(k, dim=0),
        attention_mask=attention_mask.repeat_interleave(k, dim=0),
        past_key_values=cache,
        **generate_kwargs,
    )


def _batches_by_chunk_count(audios: Sequence[Any], batch_size: int):
    """(input indices, decoded clips) per batch, clips of equal chunk count together within each window."""
    window = batch_size * GROUPING_WINDOW_BATCHES
    for window_start in range(0, len(audios), window):
        indices = range(window_start, min(window_start + window, len(audios)))
        decoded = {index: decode_audio_value(audios[index]) for index in indices}
        by_length = sorted(indices, key=lambda index: num_chunks(len(decoded[index])))
        for start in range(0, len(by_length), batch_size):
            batch_indices = by_length[start : start + batch_size]
            yield batch_indices, [decoded[index] for index in batch_indices]
