"""The Voxtral processor: built offline from a tekken file, saved so that it reloads, loaded from anywhere.

`processor.save_pretrained` writes processor_config.json and tekken.json; reloading such a folder with
`AutoProcessor` alone yields a plain `tokenizers` backend that cannot encode a transcription request, because
nothing in the folder names the Mistral backend. `save_processor` adds a tokenizer_config.json that does, and
`load_processor` builds the processor from its two parts explicitly, so folders written without that file (a
Trainer checkpoint saves the processor with plain `save_pretrained`) load too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import (
    AutoFeatureExtractor,
    AutoProcessor,
    MistralCommonBackend,
    VoxtralProcessor,
    WhisperFeatureExtractor,
)

from evoxtral.data.audio import CHUNK_SECONDS, SAMPLING_RATE

TEKKEN_FILE = "tekken.json"
TOKENIZER_CONFIG = {"tokenizer_class": "MistralCommonBackend", "processor_class": "VoxtralProcessor"}


def build_voxtral_processor(tekken_path: str | os.PathLike, num_mel_bins: int = 128) -> VoxtralProcessor:
    """Voxtral's processor: a Whisper log-mel front end (128 bins, 10 ms hop; 80 for a Whisper tiny encoder) and
    the Mistral tekken tokenizer."""
    feature_extractor = WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=SAMPLING_RATE, hop_length=160, chunk_length=CHUNK_SECONDS, n_fft=400
    )
    return VoxtralProcessor(feature_extractor, MistralCommonBackend(tokenizer_path=str(tekken_path)))


def save_processor(processor: VoxtralProcessor, output_dir: str | os.PathLike) -> None:
    """Save the processor so that `AutoProcessor.from_pretrained(output_dir)` gives it back as it was."""
    processor.save_pretrained(output_dir)
    write_tokenizer_config(output_dir)


def write_tokenizer_config(output_dir: str | os.PathLike) -> None:
    (Path(output_dir) / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")


def has_processor_files(folder: str | os.PathLike) -> bool:
    return (Path(folder) / TEKKEN_FILE).is_file()


def load_processor(source: str | os.PathLike, **hub_kwargs) -> VoxtralProcessor:
    """Load from a hub id (`mistralai/Voxtral-Mini-3B-2507`) or a folder holding tekken.json."""
    if os.path.isdir(source) and has_processor_files(source):
        return VoxtralProcessor(
            AutoFeatureExtractor.from_pretrained(source), MistralCommonBackend.from_pretrained(source)
        )
    return AutoProcessor.from_pretrained(source, **hub_kwargs)
