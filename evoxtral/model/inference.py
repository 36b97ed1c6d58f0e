"""Batched transcription with a Voxtral model (plain or with a LoRA adapter).

Evaluation, the server, the training-time evaluation callback and RAFT sampling all call `transcribe`, so the
prompt, padding and decoding are the same everywhere: the processor's transcription request (language "en"),
prompts padded on the left so every row's continuation starts at the same column, greedy decoding by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import VoxtralProcessor

from evoxtral.data.audio import decode_audio_value
from evoxtral.model.encoder_cache import ENCODER_STATES_COLUMN, accept_audio_encoder_states
from evoxtral.model.generation import decode_continuations, eval_mode, generation_collator


def transcribe(
    model: torch.nn.Module,
    processor: VoxtralProcessor,
    audios: Sequence[Any],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 512,
    language: str | None = "en",
    progress: bool = True,
    encoder_states: Sequence[np.ndarray] | None = None,
    **generate_kwargs,
) -> list[str] | list[list[str]]:
    """Transcribe each audio (array at 16 kHz, path, bytes, or a `datasets.Audio` value).

    encoder_states: the audio encoder's output for each audio, already computed (see
    `evoxtral.model.encoder_cache.SharedEncoderStates`); the encoder is then skipped and `audios` only give the count.

    Greedy unless `generate_kwargs` say otherwise (e.g. `do_sample=True, temperature=0.7, top_p=0.9`). With
    `num_return_sequences=k > 1` the result holds a list of k transcripts per input. Bad audio raises
    `AudioDecodeError` naming the input; the model's train/eval mode is restored afterwards.
    """
    # generate(num_return_sequences=k) repeats input_features one 30 s chunk-row at a time, which hands the k
    # copies of a multi-chunk clip each other's chunks. Repeating whole clips before collating keeps every copy's
    # audio its own; the work stays that of plain generate (encoder and prefill k times: see
    # evoxtral.model.sampling for the fast path).
    samples_per_input = generate_kwargs.pop("num_return_sequences", 1)
    generate_kwargs.setdefault("do_sample", False)
    collator = generation_collator(processor, language)
    if encoder_states is not None:
        if len(encoder_states) != len(audios):
            raise ValueError(f"{len(encoder_states)} encoder states for {len(audios)} audios")
        accept_audio_encoder_states(model)
        collator.features_column = ENCODER_STATES_COLUMN
    transcripts: list[str] = []
    with (
        eval_mode(model),
        tqdm(total=len(audios), desc="Transcribing", unit="clip", disable=not progress) as bar,
    ):
        for start in range(0, len(audios), batch_size):
            if encoder_states is None:
                rows = [{"audio": decode_audio_value(audio)} for audio in audios[start : start + batch_size]]
            else:
                rows = [{ENCODER_STATES_COLUMN: states} for states in encoder_states[start : start + batch_size]]
            rows = [row for row in rows for _ in range(samples_per_input)]
            batch = collator(rows)
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            batch["input_features"] = batch["input_features"].to(model.dtype)
            with torch.inference_mode():
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=collator.pad_token_id,
                    eos_token_id=collator.eos_token_id,
                    **generate_kwargs,
                )
            transcripts.extend(decode_continuations(processor, generated, batch["input_ids"].shape[1]))
            bar.update(len(rows) // samples_per_input)
    if samples_per_input == 1:
        return transcripts
    return [transcripts[index : index + samples_per_input] for index in range(0, len(transcripts), samples_per_input)]
