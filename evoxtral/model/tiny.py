"""A random-init Voxtral built fully offline: the project's built-in default model (`evoxtral-tiny`).

The folder it writes has the same files as `mistralai/Voxtral-Mini-3B-2507` (config.json, safetensors, a tekken
tokenizer, the processor config) and loads through the same calls (`AutoProcessor.from_pretrained`,
`VoxtralForConditionalGeneration.from_pretrained`), so every stage runs its real code path on it. The tokenizer
is Voxtral's BPE as shipped inside mistral-common, written as a v7 tekken file with Voxtral's special tokens and
audio section, and cut to its first `vocab_size` ranks: embedding, LM head and optimizer state dominate a tiny
model's cost, so a 4,096-token vocabulary trains ~15x faster on CPU than the full 131,072.

    python -m evoxtral.model.tiny                         # build (or find) the cached evoxtral-tiny and print its path
    python -m evoxtral.model.tiny --output-dir D --preset small   # a larger from-scratch model for learning checks

`evoxtral-tiny-whisper` (preset `tiny-whisper`) is the demo's model: the same random tiny language model, widened
to 128, listening through Whisper tiny.en's pretrained encoder (evoxtral.model.whisper_encoder; 80 mel bins, so its
processor's front end has 80 bins instead of Voxtral's 128). Everything else is Voxtral's contract: 30 s chunks,
1,500 encoder frames, 4 frames joined into one audio token by the projector.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
from mistral_common.tokens.tokenizers.base import SpecialTokens
from safetensors import safe_open
from transformers import GenerationConfig, VoxtralConfig, VoxtralForConditionalGeneration

from evoxtral.data.audio import CHUNK_SECONDS, SAMPLING_RATE
from evoxtral.model.processor import TEKKEN_FILE, build_voxtral_processor, save_processor
from evoxtral.model.whisper_encoder import WHISPER_TINY, load_whisper_tiny_encoder
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

TINY_MODEL_NAME = "evoxtral-tiny"
# Bump when the builder's output changes, so caches made by older code are not reused.
BUILD_VERSION = 1
WHISPER_TINY_ENCODER = "whisper-tiny.en"

NUM_SPECIAL_TOKENS = 1000
NUM_BYTE_TOKENS = 256
# Voxtral's special-token ranks (the rest of 0-999 are `<SPECIAL_n>` fillers, as in the released tokenizer).
VOXTRAL_SPECIAL_TOKENS = {
    0: SpecialTokens.unk,
    1: SpecialTokens.bos,
    2: SpecialTokens.eos,
    3: SpecialTokens.begin_inst,
    4: SpecialTokens.end_inst,
    5: SpecialTokens.begin_tools,
    6: SpecialTokens.end_tools,
    7: SpecialTokens.begin_tool_results,
    8: SpecialTokens.end_tool_results,
    9: SpecialTokens.tool_calls,
    10: SpecialTokens.img,
    11: SpecialTokens.pad,
    12: SpecialTokens.img_break,
    13: SpecialTokens.img_end,
    14: SpecialTokens.prefix,
    15: SpecialTokens.middle,
    16: SpecialTokens.suffix,
    17: SpecialTokens.begin_system,
    18: SpecialTokens.end_system,
    19: SpecialTokens.begin_tool_content,
    24: SpecialTokens.audio,
    25: SpecialTokens.begin_audio,
    32: SpecialTokens.args,
    33: SpecialTokens.call_id,
    34: SpecialTokens.transcribe,
}
AUDIO_TOKEN_ID = 24
PAD_TOKEN_ID = 11
# Voxtral's audio front end: 12.5 audio tokens a second (4 encoder frames of 20 ms joined into one).
VOXTRAL_AUDIO_SECTION = {
    "sampling_rate": SAMPLING_RATE,
    "frame_rate": 12.5,
    "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
    "chunk_length_s": float(CHUNK_SECONDS),
}

# Named sizes. `small` (~35M parameters) is meant to be trained from scratch in learning checks; `tiny-whisper`
# takes its audio tower's shape and weights from Whisper tiny.en.
PRESETS = {
    "tiny": dict(vocab_size=4096, text_layers=2, audio_layers=2, hidden_size=64, num_attention_heads=4),
    "small": dict(vocab_size=16384, text_layers=6, audio_layers=4, hidden_size=384, num_attention_heads=6),
    "tiny-whisper": dict(
        vocab_size=4096,
        text_layers=2,
        audio_layers=WHISPER_TINY["num_hidden_layers"],
        hidden_size=128,
        num_attention_heads=4,
        audio_encoder=WHISPER_TINY_ENCODER,
    ),
}
BUILT_IN_MODELS = {TINY_MODEL_NAME: "tiny", "evoxtral-small": "small", "evoxtral-tiny-whisper": "tiny-whisper"}
SIZE_OPTIONS = ("vocab_size", "text_layers", "audio_layers", "hidden_size", "num_attention_heads")


def write_voxtral_tekken(
    path: str | os.PathLike, vocab_size: int = PRESETS["tiny"]["vocab_size"], num_mel_bins: int = 128
) -> Path:
    """Write Voxtral's tekken tokenizer (special tokens, audio section) cut to `vocab_size` ranks."""
    if not NUM_SPECIAL_TOKENS + NUM_BYTE_TOKENS <= vocab_size:
        raise ValueError(
            f"vocab_size must be at least {NUM_SPECIAL_TOKENS + NUM_BYTE_TOKENS} "
            f"({NUM_SPECIAL_TOKENS} special tokens + {NUM_BYTE_TOKENS} byte tokens), got {vocab_size}"
        )
    source = json.loads((resources.files("mistral_common") / "data" / "tekken_240911.json").read_text())
    num_text_tokens = vocab_size - NUM_SPECIAL_TOKENS
    if num_text_tokens > len(source["vocab"]):
        raise ValueError(f"vocab_size can be at most {len(source['vocab']) + NUM_SPECIAL_TOKENS}, got {vocab_size}")
    special_tokens = [
        {"rank": rank, "token_str": str(VOXTRAL_SPECIAL_TOKENS.get(rank, f"<SPECIAL_{rank}>")), "is_control": True}
        for rank in range(NUM_SPECIAL_TOKENS)
    ]
    tekken = {
        "config": {
            **source["config"],
            "version": "v7",
            "num_vocab_tokens": num_text_tokens,
            "default_vocab_size": vocab_size,
            "default_num_special_tokens": NUM_SPECIAL_TOKENS,
        },
        "vocab": source["vocab"][:num_text_tokens],
        "special_tokens": special_tokens,
        "audio": {
            **VOXTRAL_AUDIO_SECTION,
            "audio_encoding_config": {**VOXTRAL_AUDIO_SECTION["audio_encoding_config"], "num_mel_bins": num_mel_bins},
        },
    }
    path = Path(path)
    path.write_text(json.dumps(tekken, ensure_ascii=False))
    return path


def tiny_voxtral_config(
    *,
    vocab_size: int,
    text_layers: int,
    audio_layers: int,
    hidden_size: int,
    num_attention_heads: int,
    num_key_value_heads: int | None = None,
    max_position_embeddings: int = 32768,
    audio_hidden_size: int | None = None,
    audio_num_attention_heads: int | None = None,
    num_mel_bins: int = 128,
) -> VoxtralConfig:
    """A Voxtral config with the 3B's structure at any width/depth (the audio tower as wide as the text model
    unless given its own width).

    The encoder's intermediate size stays 4 x its hidden size: the projector joins 4 encoder frames into one audio
    token by reshaping the encoder output to `intermediate_size` columns.
    """
    head_dim = hidden_size // num_attention_heads
    shared = dict(hidden_size=hidden_size, intermediate_size=4 * hidden_size, num_attention_heads=num_attention_heads)
    audio_hidden_size = audio_hidden_size or hidden_size
    audio_shape = dict(
        hidden_size=audio_hidden_size,
        intermediate_size=4 * audio_hidden_size,
        num_attention_heads=audio_num_attention_heads or num_attention_heads,
    )
    return VoxtralConfig(
        audio_config=dict(
            model_type="voxtral_encoder", num_hidden_layers=audio_layers, num_mel_bins=num_mel_bins, **audio_shape
        ),
        # A dict text_config is merged over the 3B defaults: everything that sets a shape is given here.
        text_config=dict(
            model_type="llama",
            vocab_size=vocab_size,
            num_hidden_layers=text_layers,
            num_key_value_heads=num_key_value_heads or max(1, num_attention_heads // 2),
            head_dim=head_dim,
            max_position_embeddings=max_position_embeddings,
            **shared,
        ),
        audio_token_id=AUDIO_TOKEN_ID,
    )


def build_tiny_voxtral(
    output_dir: str | os.PathLike,
    *,
    vocab_size: int = PRESETS["tiny"]["vocab_size"],
    text_layers: int = PRESETS["tiny"]["text_layers"],
    audio_layers: int = PRESETS["tiny"]["audio_layers"],
    hidden_size: int = PRESETS["tiny"]["hidden_size"],
    num_attention_heads: int = PRESETS["tiny"]["num_attention_heads"],
    num_key_value_heads: int | None = None,
    seed: int = 0,
    audio_encoder: str | None = None,
) -> Path:
    """Write a Voxtral checkpoint folder (config, safetensors, processor) to `output_dir`, every weight random
    except, with `audio_encoder="whisper-tiny.en"`, the audio tower (Whisper tiny.en's encoder and front end)."""
    if audio_encoder not in (None, WHISPER_TINY_ENCODER):
        raise ValueError(f"audio_encoder must be None or {WHISPER_TINY_ENCODER!r}, got {audio_encoder!r}")
    audio_shape = {}
    if audio_encoder == WHISPER_TINY_ENCODER:
        audio_layers = WHISPER_TINY["num_hidden_layers"]
        audio_shape = dict(
            audio_hidden_size=WHISPER_TINY["hidden_size"],
            audio_num_attention_heads=WHISPER_TINY["num_attention_heads"],
            num_mel_bins=WHISPER_TINY["num_mel_bins"],
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = tiny_voxtral_config(
        vocab_size=vocab_size,
        text_layers=text_layers,
        audio_layers=audio_layers,
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        **audio_shape,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VoxtralForConditionalGeneration(config)
    if audio_encoder == WHISPER_TINY_ENCODER:
        load_whisper_tiny_encoder(model)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=PAD_TOKEN_ID)
    model.save_pretrained(output_dir)
    num_mel_bins = config.audio_config.num_mel_bins
    tekken = write_voxtral_tekken(output_dir / TEKKEN_FILE, vocab_size, num_mel_bins)
    save_processor(build_voxtral_processor(tekken, num_mel_bins), output_dir)
    return output_dir


def evoxtral_cache_dir() -> Path:
    return Path(os.environ.get("EVOXTRAL_CACHE") or Path.home() / ".cache" / "evoxtral").expanduser()


def built_in_model_path(name: str = TINY_MODEL_NAME) -> Path:
    """The cached folder of a built-in model, built on first use.

    Built in a temporary folder beside the target and renamed into place, so processes that start at the same
    time never see a half-written folder: the first rename wins and the others drop their copy.
    """
    if name not in BUILT_IN_MODELS:
        raise KeyError(f"unknown built-in model {name!r}; known: {sorted(BUILT_IN_MODELS)}")
    target = evoxtral_cache_dir() / f"{name}-v{BUILD_VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_tiny_voxtral(staging, **PRESETS[BUILT_IN_MODELS[name]])
        staging.chmod(0o755)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tiny_voxtral_path() -> Path:
    """The cached `evoxtral-tiny` folder (built on first use)."""
    return built_in_model_path(TINY_MODEL_NAME)


def count_parameters(model_dir: str | os.PathLike) -> int:
    total = 0
    for weights in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(weights, framework="pt") as tensors:
            for key in tensors.keys():
                count = 1
                for size in tensors.get_slice(key).get_shape():
                    count *= size
                total += count
    return total


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m evoxtral.model.tiny")
    parser.add_argument("--output-dir", help="where to write; default: the evoxtral-tiny cache ($EVOXTRAL_CACHE)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="named sizes (default: tiny)")
    for option in SIZE_OPTIONS:
        parser.add_argument(f"--{option.replace('_', '-')}", type=int, help="overrides the preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = dict(PRESETS[args.preset])
    sizes.update({key: value for key in SIZE_OPTIONS if (value := getattr(args, key)) is not None})
    if args.output_dir is None and (args.preset != "tiny" or sizes != PRESETS["tiny"] or args.seed != 0):
        parser.error("--output-dir is required when the sizes or seed differ from the cached evoxtral-tiny")
    if args.output_dir is None:
        path = tiny_voxtral_path()
    else:
        path = build_tiny_voxtral(args.output_dir, seed=args.seed, **sizes)
    logger.info("Voxtral (%s: %s) at %s: %.2fM parameters", args.preset, sizes, path, count_parameters(path) / 1e6)
    return path


if __name__ == "__main__":
    main()
