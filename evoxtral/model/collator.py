"""The Voxtral transcription collator: audio + tagged text -> input_ids, attention_mask, input_features, labels.

Each row becomes the processor's transcription request, `<s>[INST][BEGIN_AUDIO][AUDIO]x(375 n)[/INST]lang:en
[TRANSCRIBE]`, followed by the tagged transcript and `</s>`. A clip of n 30 s chunks gives n rows of
`input_features` (128 x 3000 log-mel frames each) and 375 n audio placeholders; the model scatters the audio
embeddings over the placeholders in order, so the chunks of all rows are concatenated in row order.
Padding is done here (the Mistral tokenizer backend's own padding raises): right for training, left for
generation. Labels are -100 on the prompt and the padding, so only the transcript and EOS are learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import VoxtralProcessor

from evoxtral.data.audio import CHUNK_SAMPLES, SAMPLING_RATE, AudioDecodeError, decode_audio_value, num_chunks
from evoxtral.utils.arrays import as_array, encode_array, npy_bytes_feature
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

IGNORE_INDEX = -100
FEATURES_COLUMN = "input_features"


def extract_input_features(feature_extractor, audio: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Log-mel features of one 16 kHz clip as (n_chunks, 128, 3000), computed as VoxtralProcessor does.

    The processor pads the waveform with zeros to a whole number of 30 s chunks before the Whisper front end
    (`padding=True, truncation=False, pad_to_multiple_of=480000`) and splits the frames into chunk rows.
    device: where the short-time Fourier transform runs (a GPU takes it off the CPU); the result is on the CPU.
    """
    features = feature_extractor(
        audio,
        sampling_rate=SAMPLING_RATE,
        padding=True,
        truncation=False,
        pad_to_multiple_of=CHUNK_SAMPLES,
        return_tensors="pt",
        device=device,
    )["input_features"]
    return features.reshape(feature_extractor.feature_size, -1, feature_extractor.nb_max_frames).transpose(0, 1)


def transcription_prompt_ids(processor: VoxtralProcessor, num_chunks: int, language: str | None = "en") -> list[int]:
    """The processor's transcription request for a clip of `num_chunks` chunks, as token ids.

    The prompt depends on the audio only through its chunk count, so silence of that length gives it.
    """
    request = processor.apply_transcription_request(
        audio=np.zeros(num_chunks * CHUNK_SAMPLES, dtype=np.float32),
        model_id="voxtral",
        language=language,
        sampling_rate=SAMPLING_RATE,
        format="wav",
    )
    return request["input_ids"][0].tolist()


@dataclass
class VoxtralTranscriptionCollator:
    """Collate dataset rows into a Voxtral transcription batch.

    audio_column: audio as a `datasets.Audio` column gives it (decoded dict, or undecoded bytes/path), an array
        at 16 kHz, or a path; decoding and feature extraction run here, in the dataloader workers.
    text_column: the target transcript; None builds generation batches (prompt only, no labels).
    features_column: when rows carry precomputed `input_features` (see `add_input_features`), use them
        instead of decoding audio, so the GPU never waits on the front end.
    padding_side: "right" for training, "left" for generation.
    skip_bad_audio: report and drop rows whose audio does not decode instead of failing the batch.
    feature_device: where log-mel features are computed ("cpu" in dataloader workers; the model's GPU when
        the collator runs in the generating process).
    """

    processor: VoxtralProcessor
    audio_column: str = "audio"
    text_column: str | None = "tagged_text"
    features_column: str | None = None
    language: str | None = "en"
    padding_side: str = "right"
    skip_bad_audio: bool = True
    feature_device: str = "cpu"
    _prompts: dict[int, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        tokenizer = self.processor.tokenizer
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.audio_token_id = self.processor.audio_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences, label_sequences, features = [], [], []
        for example in examples:
            try:
                chunk_features = self.input_features(example)
            except AudioDecodeError as error:
                if not self.skip_bad_audio:
                    raise
                logger.warning("Skipping a row whose audio does not decode: %s", error)
                continue
            prompt = self.prompt_ids(chunk_features.shape[0])
            target = [] if self.text_column is None else self.target_ids(example[self.text_column])
            sequences.append(prompt + target)
            label_sequences.append([IGNORE_INDEX] * len(prompt) + target)
            features.append(chunk_features)
        if not sequences:
            raise AudioDecodeError(f"none of the {len(examples)} rows in this batch has decodable audio")

        batch = {
            "input_ids": self._pad(sequences, self.pad_token_id),
            "attention_mask": self._pad([[1] * len(ids) for ids in sequences], 0),
            # Cached encoder states keep their storage dtype (the encoder casts them); log-mel features are float32.
            "input_features": torch.cat(features),
        }
        if self.text_column is not None:
            labels = self._pad(label_sequences, IGNORE_INDEX)
            if (labels == self.audio_token_id).any():
                raise AssertionError("an audio placeholder token ended up as a label: the prompt mask is wrong")
            batch["labels"] = labels
        return batch

    def input_features(self, example: dict[str, Any]) -> torch.Tensor:
        if self.features_column is not None and example.get(self.features_column) is not None:
            array = as_array(example[self.features_column])
            if array.dtype not in (np.float16, np.float32):
                array = array.astype(np.float32)
            # from_numpy shares the (read-only) bytes; torch.cat in __call__ makes the batch's own copy.
            return torch.from_numpy(array) if array.flags.writeable else torch.from_numpy(array.copy())
        audio = decode_audio_value(example[self.audio_column])
        return extract_input_features(self.processor.feature_extractor, audio, self.feature_device)

    def prompt_ids(self, num_chunks: int) -> list[int]:
        if num_chunks not in self._prompts:
            self._prompts[num_chunks] = transcription_prompt_ids(self.processor, num_chunks, self.language)
        return self._prompts[num_chunks]

    def target_ids(self, text: str) -> list[int]:
        # Plain text encoding: a literal "[AUDIO]" or "[INST]" in a transcript stays text, never a control token.
        return self.processor.tokenizer.encode(text.strip(), add_special_tokens=False) + [self.eos_token_id]

    def _pad(self, sequences: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(sequence) for sequence in sequences)
        padded = torch.full((len(sequences), width), value, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            if self.padding_side == "right":
                padded[row, : len(sequence)] = torch.tensor(sequence)
            else:
                padded[row, width - len(sequence) :] = torch.tensor(sequence)
        return padded


def add_input_features(
    dataset: Dataset,
    processor: VoxtralProcessor,
    *,
    audio_column: str = "audio",
    features_column: str = FEATURES_COLUMN,
    num_proc: int | None = None,
) -> Dataset:
    """Precompute `input_features` for every row (cached by `datasets` like any map).

    Stored as `.npy` bytes (evoxtral.utils.arrays), 1.5 MB of disk per 30 s chunk (float32); saves the log-mel
    front end on every epoch. A clip that does not decode gets no features; the collator then reports and skips it.
    """

    def compute(example):
        try:
            audio = decode_audio_value(example[audio_column])
        except AudioDecodeError as error:
            logger.warning("No features for a row whose audio does not decode: %s", error)
            return {features_column: None}
        return {features_column: encode_array(extract_input_features(processor.feature_extractor, audio).numpy())}

    new_features = dataset.features.copy()
    new_features[features_column] = npy_bytes_feature()
    return dataset.map(compute, features=new_features, num_proc=num_proc, desc="Log-mel features")


def add_sequence_lengths(
    dataset: Dataset,
    collator: VoxtralTranscriptionCollator,
    *,
    length_column: str = "length",
    num_proc: int | None = None,
) -> Dataset:
    """Add each row's token count (prompt with its audio placeholders, target, EOS), as the collator builds it.

    The Trainer's `train_sampling_strategy: group_by_length` reads this column (`length_column_name`) to batch rows
    of similar length together, so less of each batch is padding. The chunk count comes from the audio's length; a
    row whose audio does not decode gets length 0 (the collator skips it anyway).
    """

    def compute(audio_value, text=None):
        try:
            audio = decode_audio_value(audio_value)
        except AudioDecodeError:
            return {length_column: 0}
        target = [] if text is None else collator.target_ids(text)
        return {length_column: len(collator.prompt_ids(num_chunks(len(audio)))) + len(target)}

    # Only the audio and text columns are read: precomputed features would be slow to load for nothing.
    columns = [collator.audio_column] + ([collator.text_column] if collator.text_column else [])
    return dataset.map(compute, input_columns=columns, num_proc=num_proc, desc="Sequence lengths")
