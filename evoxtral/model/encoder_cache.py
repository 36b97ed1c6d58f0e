"""The frozen audio encoder's output, computed once per clip and reused by every epoch of SFT.

With the encoder frozen and LoRA-free, its output for a clip never changes during training, yet every step runs
it again: 32 Whisper-large layers over 1,500 frames per 30 s chunk, about a fifth of a step's arithmetic at
Voxtral-Mini-3B shapes. `add_audio_encoder_states` runs it once per row (`datasets.map`, cached on disk under the
dataset's fingerprint, the model's name and a hash of the encoder's weights) and stores the states; the collator
passes them where the log-mel features would go (`features_column`), and `accept_audio_encoder_states` lets the
encoder hand them straight to the projector. Log-mel features still go through the encoder, so generation-based
evaluation during training is unchanged.

Storage: each row's states as `.npy` bytes (evoxtral.utils.arrays), so the collator reads them with a memory copy
instead of a Python object per value. Disk: 1,500 x 1,280 values per 30 s chunk at real shapes, 3.7 MiB in
float16 (7.3 MiB in float32), against 1.5 MiB for the log-mel features.
"""

from __future__ import annotations

import types

import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutputWithPooling
from trl.trainer.utils import hash_module

from evoxtral.data.audio import AudioDecodeError, decode_audio_value
from evoxtral.model.collator import extract_input_features
from evoxtral.utils.arrays import as_array, encode_array, npy_bytes_feature
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

ENCODER_STATES_COLUMN = "audio_encoder_states"


def audio_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The Voxtral audio encoder inside a plain, PEFT-wrapped or compiled model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "_orig_mod", base).model.audio_tower


def accept_audio_encoder_states(model: torch.nn.Module) -> None:
    """Let the audio encoder take its own precomputed output in place of log-mel features.

    A batch whose `input_features` have the encoder's output shape (chunks, 1500, hidden) skips the encoder; log-mel
    features (chunks, 128, 3000) run it as before. The weights and the saved checkpoint are untouched.
    """
    encoder = audio_encoder(model)
    # Bound to the instance (not a closure over it), so a deep copy of the model binds to its own encoder.
    encoder.forward = types.MethodType(_forward_accepting_states, encoder)


def _forward_accepting_states(encoder, input_features, *args, **kwargs):
    if tuple(input_features.shape[1:]) == (encoder.config.max_source_positions, encoder.config.hidden_size):
        return BaseModelOutputWithPooling(last_hidden_state=input_features.to(encoder.conv1.weight.dtype))
    return type(encoder).forward(encoder, input_features, *args, **kwargs)


def add_audio_encoder_states(
    dataset: Dataset,
    model: torch.nn.Module,
    processor,
    *,
    audio_column: str = "audio",
    features_column: str | None = None,
    states_column: str = ENCODER_STATES_COLUMN,
    batch_size: int = 16,
    storage_dtype: str | None = None,
) -> Dataset:
    """Add the audio encoder's output for every row, as (chunks, 1500, hidden) arrays in `.npy` bytes.

    The encoder runs where the model is, in eval mode, on `batch_size` rows at a time. features_column: read
    precomputed log-mel features from there instead of decoding audio. storage_dtype: "float16" or "float32";
    default float32 for a float32 model, float16 otherwise (exact for bfloat16 values in float16's range). A row
    whose audio does not decode gets no states; the collator then reports and skips it.
    """
    encoder = audio_encoder(model)
    storage_dtype = storage_dtype or ("float32" if encoder.conv1.weight.dtype == torch.float32 else "float16")
    if storage_dtype not in ("float16", "float32"):
        raise ValueError(f"storage_dtype must be 'float16' or 'float32', got {storage_dtype!r}")
    new_features = dataset.features.copy()
    new_features[states_column] = npy_bytes_feature()
    fingerprint = Hasher.hash(
        [
            dataset._fingerprint,
            "audio-encoder-states-npy",
            storage_dtype,
            str(encoder.conv1.weight.dtype),
            hash_module(encoder),
        ]
    )

    def log_mel(example) -> torch.Tensor | None:
        if features_column is not None and example.get(features_column) is not None:
            return torch.as_tensor(as_array(example[features_column], np.float32))
        try:
            return extract_input_features(processor.feature_extractor, decode_audio_value(example[audio_column]))
        except AudioDecodeError as error:
            logger.warning("No encoder states for a row whose audio does not decode: %s", error)
            return None

    def compute(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        features = [log_mel(row) for row in rows]
        decoded = [chunks for chunks in features if chunks is not None]
        states_per_row: list[bytes | None] = [None] * len(rows)
        rows_with_audio = [index for index, chunks in enumerate(features) if chunks is not None]
        for index, row_states in zip(rows_with_audio, run_audio_encoder(encoder, decoded)):
            states_per_row[index] = encode_array(row_states.astype(storage_dtype))
        return {states_column: states_per_row}

    was_training = encoder.training
    encoder.eval()
    try:
        with_states = dataset.map(
            compute,
            batched=True,
            batch_size=batch_size,
            features=new_features,
            new_fingerprint=fingerprint,
            desc="Audio encoder states",
        )
    finally:
        encoder.train(was_training)
    return with_states


@torch.inference_mode()
def run_audio_encoder(encoder: torch.nn.Module, chunk_features: list[torch.Tensor]) -> list[np.ndarray]:
    """The encoder's float32 output for each clip's (chunks, mels, 3000) log-mel features, in one forward."""
    if not chunk_features:
        return []
    states = encoder(torch.cat(chunk_features).to(encoder.conv1.weight.device)).last_hidden_state
    states = states.float().cpu().numpy()
    return np.split(states, np.cumsum([chunks.shape[0] for chunks in chunk_features])[:-1])


class SharedEncoderStates:
    """Encoder outputs of a fixed list of clips, in memory, shared by every model whose audio encoder has the same
    weights (keyed by a hash of them).

    An evaluation of a base model and of models fine-tuned from it with the encoder frozen runs the same encoder on
    the same clips once per model, and again for the mismatched-audio control; with this it runs once per clip in
    all. Memory: 1,500 x hidden float32 values per 30 s chunk (2.3 MB at Whisper tiny's 384, 7.7 MB at the 3B's
    1,280): meant for evaluation sets; training sets use `add_audio_encoder_states`, which stores them on disk.
    """

    def __init__(self, audios: list, *, batch_size: int = 16):
        self.audios = audios
        self.batch_size = batch_size
        self._states: dict[str, list[np.ndarray]] = {}

    def states(self, model: torch.nn.Module, processor) -> list[np.ndarray]:
        """Each clip's (chunks, 1500, hidden) states under this model's encoder, computed on first use."""
        encoder = audio_encoder(model)
        key = hash_module(encoder)
        if key not in self._states:
            states: list[np.ndarray] = []
            was_training = encoder.training
            encoder.eval()
            try:
                for start in tqdm(range(0, len(self.audios), self.batch_size), desc="Audio encoder states"):
                    batch = self.audios[start : start + self.batch_size]
                    features = [
                        extract_input_features(processor.feature_extractor, decode_audio_value(audio))
                        for audio in batch
                    ]
                    states.extend(run_audio_encoder(encoder, features))
            finally:
                encoder.train(was_training)
            self._states[key] = states
        return self._states[key]
