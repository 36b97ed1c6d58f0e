"""Export a Voxtral trained here (base + PEFT adapter, or a merged folder) to what vLLM serves.

    python -m evoxtral.model.vllm_export outputs/tiny/sft --output-dir outputs/tiny/sft-vllm
    python -m evoxtral.model.vllm_export you/evoxtral-lora --base-model mistralai/Voxtral-Mini-3B-2507 \\
        --output-dir evoxtral-vllm --dtype bfloat16
    python -m evoxtral.model.vllm_export outputs/tiny/sft-merged --output-dir outputs/tiny/merged-vllm

vLLM's Voxtral loads only Mistral's own format: ``params.json`` (the shapes), ``consolidated.safetensors`` (weights
under Mistral's names, the language model's q/k rows in Mistral's interleaved rotary layout, which vLLM permutes
back to the rotate-half layout transformers uses) and ``tekken.json``. Its LoRA covers the language model only: a
LoRA on the projector is rejected, one on the encoder silently ignored, and a transformers-5 PEFT adapter loads but
changes nothing until its keys follow vLLM's module tree. So the export writes

- ``<output-dir>/``: the base in Mistral format, with every part of the adapter vLLM cannot take as a LoRA (the
  projector and encoder LoRA, fully trained ``modules_to_save`` such as ``lm_head``) merged in;
- ``<output-dir>/lora/``: the language-model LoRA (q/k/v/o/gate/up/down projections) under vLLM's key names, served
  with ``--enable-lora --lora-modules evoxtral=<output-dir>/lora`` (absent when the adapter has no such part, or
  with ``--merge-all``, which merges everything into the base);
- ``<output-dir>/evoxtral_export.json``: what went where, the LoRA rank vLLM must allow (``--max-lora-rank``).

A LoRA folder is never a silent no-op: the export checks that every key names a module vLLM's Voxtral adapts and
that the adapter changes the model, and with the vLLM environment at hand (``make vllm-venv``) it runs vLLM with
and without the LoRA on a probe clip and requires the LoRA to move vLLM's log-probabilities as it moves
transformers'. What cannot be served (DoRA, other PEFT methods, a model that is not Voxtral) is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from evoxtral.model.processor import TEKKEN_FILE, save_processor
from evoxtral.model.tiny import TINY_MODEL_NAME
from evoxtral.model.vllm_runner import find_vllm_python, run_vllm
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

PARAMS_FILE = "params.json"
WEIGHTS_FILE = "consolidated.safetensors"
LORA_DIR = "lora"
MANIFEST_FILE = "evoxtral_export.json"
LORA_WEIGHTS_FILE = "adapter_model.safetensors"
# Ranks vLLM's LoRA kernels accept for --max-lora-rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Voxtral's audio front end joins this many encoder frames into one audio token.
DOWNSAMPLE_FACTOR = 4

# The modules vLLM's Voxtral takes LoRA on: the language model's projections (transformers 5 module names).
VLLM_LORA_MODULE = re.compile(
    r"model\.language_model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)
ENCODER = "mm_whisper_embeddings.whisper_encoder"
# transformers 5 parameter names (as `model.state_dict()` gives them) -> Mistral names, both ways exact.
NAME_RULES = [
    (r"model\.language_model\.embed_tokens\.weight", r"tok_embeddings.weight"),
    (r"model\.language_model\.norm\.weight", r"norm.weight"),
    (r"lm_head\.weight", r"output.weight"),
    (r"model\.language_model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight", r"layers.\1.attention.w\2.weight"),
    (r"model\.language_model\.layers\.(\d+)\.mlp\.gate_proj\.weight", r"layers.\1.feed_forward.w1.weight"),
    (r"model\.language_model\.layers\.(\d+)\.mlp\.down_proj\.weight", r"layers.\1.feed_forward.w2.weight"),
    (r"model\.language_model\.layers\.(\d+)\.mlp\.up_proj\.weight", r"layers.\1.feed_forward.w3.weight"),
    (r"model\.language_model\.layers\.(\d+)\.input_layernorm\.weight", r"layers.\1.attention_norm.weight"),
    (r"model\.language_model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"layers.\1.ffn_norm.weight"),
    (r"model\.multi_modal_projector\.linear_1\.weight", r"mm_whisper_embeddings.audio_language_projection.0.weight"),
    (r"model\.multi_modal_projector\.linear_2\.weight", r"mm_whisper_embeddings.audio_language_projection.2.weight"),
    (r"model\.audio_tower\.conv1\.(weight|bias)", ENCODER + r".conv_layers.0.\1"),
    (r"model\.audio_tower\.conv2\.(weight|bias)", ENCODER + r".conv_layers.1.\1"),
    # vLLM substitutes sinusoids for a missing table: keep the model's own.
    (r"model\.audio_tower\.embed_positions\.weight", ENCODER + r".embed_positions.weight"),
    (r"model\.audio_tower\.layer_norm\.(weight|bias)", ENCODER + r".transformer.norm.\1"),
    (
        r"model\.audio_tower\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)",
        ENCODER + r".transformer.layers.\1.attention.w\2.\3",
    ),
    (
        r"model\.audio_tower\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
        ENCODER + r".transformer.layers.\1.attention.wo.\2",
    ),
    (
        r"model\.audio_tower\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
        ENCODER + r".transformer.layers.\1.attention_norm.\2",
    ),
    (
        r"model\.audio_tower\.layers\.(\d+)\.fc([12])\.(weight|bias)",
        ENCODER + r".transformer.layers.\1.feed_forward.w\2.\3",
    ),
    (
        r"model\.audio_tower\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
        ENCODER + r".transformer.layers.\1.ffn_norm.\2",
    ),
]


class VllmExportError(ValueError):
    """The model or adapter cannot be served by vLLM as asked; the message says why and what to do instead."""


@dataclass
class VllmExport:
    """Where an export went and what it holds."""

    model_dir: Path
    lora_dir: Path | None
    lora_rank: int | None
    lora_modules: list[str] = field(default_factory=list)  # language-model modules served as LoRA
    merged: list[str] = field(default_factory=list)  # adapted modules folded into the exported base
    check: dict | None = None  # the vLLM check's figures, when it ran

    def manifest(self) -> dict:
        return {
            "model_dir": str(self.model_dir),
            "lora_dir": str(self.lora_dir) if self.lora_dir else None,
            "max_lora_rank": self.lora_rank,
            "served_as_lora": self.lora_modules,
            "merged_into_base": self.merged,
            "vllm_check": self.check,
        }


# --- names and layouts ------------------------------------------------------------------------------------------------


def _rename(name: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def _inverse_rules() -> list[tuple[str, str]]:
    """Mistral -> transformers: each rule's replacement as a pattern, its groups as the other side's back-refs."""
    inverse = []
    for pattern, replacement in NAME_RULES:
        groups = re.findall(r"\((.*?)\)", pattern)
        back_pattern = re.escape(replacement)
        for index, group in enumerate(groups, start=1):
            back_pattern = back_pattern.replace(re.escape(f"\\{index}"), f"({group})", 1)
        # the pattern's literal pieces with its groups as back-references, in order
        pieces = re.split(r"\(.*?\)", pattern)
        back_replacement = "".join(
            piece + (f"\\{number}" if number <= len(groups) else "") for number, piece in enumerate(pieces, start=1)
        ).replace("\\.", ".")
        inverse.append((back_pattern, back_replacement))
    return inverse


def to_interleaved_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q/k rows from transformers' rotate-half layout to Mistral's interleaved one (vLLM's loader undoes this)."""
    rows, columns = weight.shape
    return weight.view(num_heads, 2, rows // num_heads // 2, columns).transpose(1, 2).reshape(rows, columns)


def to_rotate_half(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The inverse of `to_interleaved_rotary` (what vLLM's Mistral loader does on load)."""
    rows, columns = weight.shape
    return weight.view(num_heads, rows // num_heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def _rotary_heads(mistral_name: str, params: dict) -> int | None:
    if re.fullmatch(r"layers\.\d+\.attention\.wq\.weight", mistral_name):
        return params["n_heads"]
    if re.fullmatch(r"layers\.\d+\.attention\.wk\.weight", mistral_name):
        return params["n_kv_heads"]
    return None


def hf_to_mistral_state_dict(state_dict: dict[str, torch.Tensor], params: dict) -> dict[str, torch.Tensor]:
    """Every transformers weight under its Mistral name and layout; a weight with no Mistral name is an error."""
    converted, unknown = {}, []
    for name, tensor in state_dict.items():
        mistral_name = _rename(name, NAME_RULES)
        if mistral_name is None:
            unknown.append(name)
            continue
        heads = _rotary_heads(mistral_name, params)
        tensor = to_interleaved_rotary(tensor, heads) if heads else tensor
        converted[mistral_name] = tensor.detach().cpu().contiguous()
    if unknown:
        raise VllmExportError(f"{len(unknown)} weights have no place in vLLM's Voxtral, e.g. {unknown[:3]}")
    return converted


def mistral_to_hf_state_dict(state_dict: dict[str, torch.Tensor], params: dict) -> dict[str, torch.Tensor]:
    """The inverse of `hf_to_mistral_state_dict` (the round trip is exact)."""
    inverse, converted = _inverse_rules(), {}
    for name, tensor in state_dict.items():
        hf_name = _rename(name, inverse)
        if hf_name is None:
            raise VllmExportError(f"{name} is not a Voxtral weight in Mistral format")
        heads = _rotary_heads(name, params)
        converted[hf_name] = to_rotate_half(tensor, heads) if heads else tensor
    return converted


def mistral_params(config) -> dict:
    """params.json from a transformers VoxtralConfig (what vLLM's Mistral config reader maps back)."""
    text, audio = config.text_config, config.audio_config
    rope = getattr(text, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(text, "rope_theta", None))
    if rope.get("rope_type", "default") != "default":
        raise VllmExportError(f"rope scaling {rope.get('rope_type')!r} has no params.json mapping here")
    if audio.intermediate_size != DOWNSAMPLE_FACTOR * audio.hidden_size:
        raise VllmExportError("the projector must join 4 encoder frames (audio intermediate_size = 4 x hidden_size)")
    return {
        "dim": text.hidden_size,
        "n_layers": text.num_hidden_layers,
        "head_dim": text.head_dim,
        "hidden_dim": text.intermediate_size,
        "n_heads": text.num_attention_heads,
        "n_kv_heads": text.num_key_value_heads,
        "rope_theta": float(rope_theta),
        "norm_eps": text.rms_norm_eps,
        "vocab_size": text.vocab_size,
        "max_position_embeddings": text.max_position_embeddings,
        "max_seq_len": text.max_position_embeddings,
        "tied_embeddings": bool(getattr(text, "tie_word_embeddings", False)),
        "multimodal": {
            "whisper_model_args": {
                "encoder_args": {
                    "dim": audio.hidden_size,
                    "n_layers": audio.num_hidden_layers,
                    "head_dim": audio.hidden_size // audio.num_attention_heads,
                    "hidden_dim": audio.intermediate_size,
                    "n_heads": audio.num_attention_heads,
                    "vocab_size": audio.vocab_size,
                    "max_source_positions": audio.max_source_positions,
                    "audio_encoding_args": {
                        "sampling_rate": 16000,
                        "num_mel_bins": audio.num_mel_bins,
                        "hop_length": 160,
                        "window_size": 400,
                    },
                },
                "downsample_args": {"downsample_factor": DOWNSAMPLE_FACTOR},
            }
        },
    }


# --- the adapter --------------------------------------------------------------------------------------------------------


def vllm_lora_key(peft_module_name: str) -> str:
    """A transformers-5 PEFT module name (``model.language_model.layers.N...``) as vLLM's tree names it."""
    match = VLLM_LORA_MODULE.fullmatch(peft_module_name)
    if match is None:
        raise VllmExportError(f"{peft_module_name} is not a language-model projection vLLM takes LoRA on")
    layer, block, projection = match.groups()
    return f"base_model.model.language_model.model.layers.{layer}.{block}.{projection}"


def _check_adapter_servable(peft_config) -> None:
    from peft import PeftType

    if peft_config.peft_type != PeftType.LORA:
        raise VllmExportError(f"vLLM serves LoRA adapters only; this one is {peft_config.peft_type.value}")
    if getattr(peft_config, "use_dora", False):
        raise VllmExportError("vLLM cannot serve DoRA: merge it (python -m evoxtral.model.merge) and export that")


def _lora_layers(model) -> dict[str, torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {
        name.removeprefix("base_model.model."): module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


def split_adapter(model, *, merge_all: bool = False) -> tuple[dict[str, torch.Tensor], dict, list[str], list[str]]:
    """Fold into the base what vLLM cannot serve as LoRA and take out the rest.

    Returns (the base's transformers state dict with those parts merged, the vLLM LoRA tensors by vLLM key, the
    language-model modules served as LoRA, the adapted modules merged). ``model`` is a PeftModel; it is changed.
    """
    adapter_name = model.active_adapter
    peft_config = model.peft_config[adapter_name]
    _check_adapter_servable(peft_config)
    uniform_rank = not (peft_config.rank_pattern or peft_config.alpha_pattern)
    lora_tensors, served, merged = {}, [], []
    for name, layer in _lora_layers(model).items():
        if adapter_name not in layer.lora_A:
            continue
        if not merge_all and uniform_rank and VLLM_LORA_MODULE.fullmatch(name):
            key = vllm_lora_key(name)
            scale = layer.scaling[adapter_name] / (peft_config.lora_alpha / peft_config.r)
            # vLLM applies the adapter_config's alpha / r: a module scaled otherwise (rsLoRA) carries it in B.
            lora_tensors[f"{key}.lora_A.weight"] = layer.lora_A[adapter_name].weight.detach().clone().contiguous()
            lora_tensors[f"{key}.lora_B.weight"] = (layer.lora_B[adapter_name].weight.detach() * scale).contiguous()
            served.append(name)
        else:
            layer.merge(adapter_names=[adapter_name])
            merged.append(name)
    base = model.get_base_model()
    state, trained_in_full = {}, []
    for name, tensor in base.state_dict().items():
        if ".lora_" in name or ".original_module." in name:
            continue
        if ".modules_to_save." in name:
            name = name.replace(f".modules_to_save.{adapter_name}.", ".")
            trained_in_full.append(name.rsplit(".", 1)[0])
        state[name.replace(".base_layer.", ".")] = tensor.detach()
    return state, lora_tensors, served, merged + sorted(set(trained_in_full))


def lora_adapter_config(peft_config, served: list[str]) -> dict:
    """The adapter_config.json vLLM reads for the LoRA folder: plain target names, no regex, no saved modules."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "r": peft_config.r,
        "lora_alpha": peft_config.lora_alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "target_modules": sorted({name.rsplit(".", 1)[-1] for name in served}),
        "modules_to_save": None,
        "base_model_name_or_path": None,
    }


def vllm_max_lora_rank(rank: int) -> int:
    fitting = [allowed for allowed in VLLM_LORA_RANKS if allowed >= rank]
    if not fitting:
        raise VllmExportError(f"LoRA rank {rank} exceeds vLLM's largest ({VLLM_LORA_RANKS[-1]}): use --merge-all")
    return fitting[0]


# --- the export ---------------------------------------------------------------------------------------------------------


def export_for_vllm(
    model_name_or_path: str,
    output_dir: str | Path,
    *,
    adapter: str | None = None,
    dtype: str = "auto",
    merge_all: bool = False,
    check: Callable[[VllmExport, str, str | None], dict | None] | None = None,
) -> VllmExport:
    """Write the Mistral-format model (and the vLLM LoRA folder) for ``model_name_or_path`` (+ ``adapter``).

    ``model_name_or_path`` is a base model, a merged folder or an adapter folder (its base read from it). ``check``
    (default: `check_with_vllm` when the vLLM environment is there) runs after the files are written.
    """
    from evoxtral.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(model_name_or_path, adapter=adapter, dtype=dtype)
    export = write_vllm_export(model, processor, output_dir, merge_all=merge_all, source=model_name_or_path)
    if check is None:
        check = check_with_vllm if find_vllm_python() else None
        if check is None:
            logger.warning(
                "No vLLM environment (make vllm-venv, or EVOXTRAL_VLLM_PYTHON): the export was not checked in vLLM"
            )
    if check:
        export.check = check(export, model_name_or_path, adapter)
        (export.model_dir / MANIFEST_FILE).write_text(json.dumps(export.manifest(), indent=2) + "\n")
    return export


def write_vllm_export(
    model, processor, output_dir: str | Path, *, merge_all: bool = False, source: str = "the model"
) -> VllmExport:
    """`export_for_vllm` for a model already loaded (a Voxtral or a PeftModel of one; a PeftModel is changed), with
    no check in vLLM: what the sampling bench exports its random-weight model with."""
    from peft import PeftModel

    base_config = (model.get_base_model() if isinstance(model, PeftModel) else model).config
    if getattr(base_config, "model_type", None) != "voxtral":
        raise VllmExportError(f"{source} is a {base_config.model_type!r} model, not Voxtral")
    params = mistral_params(base_config)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / MANIFEST_FILE).is_file():
        raise VllmExportError(f"{output_dir} exists and is not an earlier export: choose an empty folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(output_dir / LORA_DIR, ignore_errors=True)

    if isinstance(model, PeftModel):
        peft_config = model.peft_config[model.active_adapter]
        state, lora_tensors, served, merged = split_adapter(model, merge_all=merge_all)
    else:
        state, lora_tensors, served, merged = model.state_dict(), {}, [], []
    save_file(hf_to_mistral_state_dict(state, params), output_dir / WEIGHTS_FILE)
    (output_dir / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
    save_processor(processor, output_dir)
    if not (output_dir / TEKKEN_FILE).is_file():
        raise VllmExportError(f"the processor of {source} wrote no {TEKKEN_FILE}: vLLM needs it")

    export = VllmExport(output_dir, None, None, [], merged)
    if lora_tensors:
        export.lora_dir, export.lora_rank, export.lora_modules = output_dir / LORA_DIR, peft_config.r, served
        export.lora_dir.mkdir()
        _check_lora_moves_the_model(lora_tensors, served)
        save_file(lora_tensors, export.lora_dir / LORA_WEIGHTS_FILE)
        (export.lora_dir / "adapter_config.json").write_text(
            json.dumps(lora_adapter_config(peft_config, served), indent=2) + "\n"
        )
        export.lora_rank = vllm_max_lora_rank(peft_config.r)
    if merged:
        logger.info(
            "Merged into the exported base (vLLM takes no LoRA there): %s",
            ", ".join(_summarise_modules(merged)),
        )
    if served:
        logger.info(
            "Served as a vLLM LoRA from %s (max rank %d): %s",
            export.lora_dir,
            export.lora_rank,
            ", ".join(_summarise_modules(served)),
        )
    (output_dir / MANIFEST_FILE).write_text(json.dumps(export.manifest(), indent=2) + "\n")
    return export


def _check_lora_moves_the_model(lora_tensors: dict[str, torch.Tensor], served: list[str]) -> None:
    """A LoRA whose B matrices are all zero (an untrained adapter) would be a silent no-op in vLLM."""
    largest = max(tensor.abs().max().item() for key, tensor in lora_tensors.items() if key.endswith("lora_B.weight"))
    if largest == 0:
        raise VllmExportError(
            f"the adapter's LoRA on {len(served)} language-model modules is all zero (untrained): it changes nothing"
        )


def _summarise_modules(names: list[str]) -> list[str]:
    """``model.language_model.layers.0.self_attn.q_proj`` ... as ``language_model layers.*.self_attn.q_proj`` once."""
    return sorted({re.sub(r"\.layers\.\d+\.", ".layers.*.", name.removeprefix("model.")) for name in names})


def load_mistral_export(model_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(transformers state dict, params) read back from an export: what the round-trip test compares."""
    model_dir = Path(model_dir)
    params = json.loads((model_dir / PARAMS_FILE).read_text())
    return mistral_to_hf_state_dict(load_file(model_dir / WEIGHTS_FILE), params), params


# --- the export's check ---------------------------------------------------------------------------------------------------

PROBE_SECONDS = 2.0
PROBE_TOP_LOGPROBS = 5
# vLLM's CPU kernels and transformers agree to about 1e-4 on the tiny model; a LoRA that moves nothing moves < 1e-6.
LOGPROB_TOLERANCE = 2e-3


def probe_clip(seconds: float = PROBE_SECONDS, seed: int = 0) -> np.ndarray:
    """A fixed noise clip: the check needs the same audio on both sides, not speech."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


def transformers_first_logprobs(model, processor, audio, language: str | None = "en"):
    """log-softmax of the first generated position (float64 numpy) for one clip."""
    import torch

    from evoxtral.model.generation import generation_collator

    batch = generation_collator(processor, language)([{"audio": audio}])
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    batch["input_features"] = batch["input_features"].to(model.dtype)
    with torch.inference_mode():
        logits = model(**batch, logits_to_keep=1).logits[0, -1]
    return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()


def check_with_vllm(export, model_name_or_path: str, adapter: str | None, *, language: str | None = "en") -> dict:
    """Run the export in vLLM with and without its LoRA on a probe clip and compare with transformers.

    Refuses (`VllmExportError`) an export whose base disagrees with transformers' merged-in base, or whose LoRA does
    not move vLLM's log-probabilities as it moves transformers' (the silent no-op of a mis-keyed adapter).
    """
    from peft import PeftModel

    from evoxtral.model.loading import load_model_and_processor

    clip = probe_clip()
    model, processor = load_model_and_processor(model_name_or_path, adapter=adapter, dtype="float32")
    adapted = transformers_first_logprobs(model, processor, clip, language)
    runs = [{"name": "base", "lora": None, "max_tokens": 1, "logprobs": PROBE_TOP_LOGPROBS}]
    if export.lora_dir:
        runs.append({"name": "lora", "lora": str(export.lora_dir), "max_tokens": 1, "logprobs": PROBE_TOP_LOGPROBS})
    result = run_vllm(export.model_dir, [clip], runs, max_lora_rank=export.lora_rank, dtype="float32",
                      language=language)  # fmt: skip

    def top(run: str) -> dict[int, float]:
        return {int(token): value for token, value in result["runs"][run][0]["logprobs"][0][0].items()}

    figures = {"load_seconds": round(result["load_seconds"], 1)}
    if export.lora_dir is None:
        served = top("base")
        figures["max_abs_logprob_diff"] = float(max(abs(value - adapted[token]) for token, value in served.items()))
    else:
        with model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext():
            base_only = transformers_first_logprobs(model, processor, clip, language)
        served, unadapted = top("lora"), top("base")
        # vLLM without the LoRA is the exported base (the merged parts in it); transformers without the adapter is
        # the plain base, so the LoRA's effect is compared on the tokens where both sides report it.
        figures["max_abs_logprob_diff"] = float(max(abs(value - adapted[token]) for token, value in served.items()))
        figures["lora_moves_vllm_by"] = float(
            max(abs(served[token] - unadapted[token]) for token in served.keys() & unadapted)
        )
        figures["adapter_moves_transformers_by"] = float(np.abs(adapted - base_only).max())
        if figures["lora_moves_vllm_by"] <= LOGPROB_TOLERANCE / 100:
            raise VllmExportError(f"vLLM's output does not change with the LoRA ({figures}): it would be a no-op")
    if figures["max_abs_logprob_diff"] > LOGPROB_TOLERANCE:
        raise VllmExportError(f"vLLM serving the export disagrees with transformers ({figures})")
    logger.info("vLLM check passed: %s", figures)
    return figures


def main(argv: list[str] | None = None) -> VllmExport:
    parser = argparse.ArgumentParser(prog="python -m evoxtral.model.vllm_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=f"adapter folder, merged model folder, hub id or {TINY_MODEL_NAME}")
    parser.add_argument("--output-dir", required=True, help="where the Mistral-format model (and lora/) go")
    parser.add_argument("--base-model", help="the base model when `model` is an adapter recorded with another base")
    parser.add_argument("--dtype", default="auto", help="auto (the checkpoint's), bfloat16, float16 or float32")
    parser.add_argument("--merge-all", action="store_true", help="merge the whole adapter into the base (no LoRA)")
    parser.add_argument("--no-check", action="store_true", help="skip the check in vLLM (it starts vLLM once)")
    args = parser.parse_args(argv)
    model, adapter = (args.base_model, args.model) if args.base_model else (args.model, None)
    try:
        export = export_for_vllm(
            model,
            args.output_dir,
            adapter=adapter,
            dtype=args.dtype,
            merge_all=args.merge_all,
            check=(lambda *_: None) if args.no_check else None,
        )
    except VllmExportError as error:
        parser.exit(2, f"cannot export for vLLM: {error}\n")
    size = (export.model_dir / WEIGHTS_FILE).stat().st_size / 2**20
    logger.info("Exported %s to %s (%.1f MiB, Mistral format)", args.model, export.model_dir, size)
    return export


if __name__ == "__main__":
    main()
