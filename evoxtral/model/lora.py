"""Where LoRA goes on Voxtral: the language model's attention and MLP projections and the multi-modal projector,
named explicitly, and the audio encoder's attention only when asked.

The original recipe's suffix match `q_proj, k_proj, v_proj` also caught the encoder's attention, adding 15.7M
trainable parameters; `lora_on_audio_encoder` reproduces it on purpose.
"""

from __future__ import annotations

import re

from peft import LoraConfig
from trl import ModelConfig

from evoxtral.configs import VoxtralSFTArguments

LANGUAGE_MODEL_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROJECTOR_LORA_TARGETS = ["linear_1", "linear_2"]
# What the original suffix match put on the encoder (its attention input projections).
AUDIO_ENCODER_LORA_TARGETS = ["q_proj", "k_proj", "v_proj"]


def lora_target_pattern(
    language_model_modules: list[str] | None = None, *, include_audio_encoder: bool = False
) -> str:
    """A PEFT `target_modules` regex (matched against full module names) that names each part explicitly."""
    language_model_modules = language_model_modules or LANGUAGE_MODEL_LORA_TARGETS
    parts = [
        rf"model\.language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{'|'.join(map(re.escape, language_model_modules))})",
        rf"model\.multi_modal_projector\.(?:{'|'.join(PROJECTOR_LORA_TARGETS)})",
    ]
    if include_audio_encoder:
        parts.append(rf"model\.audio_tower\.layers\.\d+\.self_attn\.(?:{'|'.join(AUDIO_ENCODER_LORA_TARGETS)})")
    return "|".join(f"(?:{part})" for part in parts)


def voxtral_lora_config(model_args: ModelConfig, sft_args: VoxtralSFTArguments) -> LoraConfig | None:
    if not model_args.use_peft:
        return None
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=lora_target_pattern(
            model_args.lora_target_modules, include_audio_encoder=sft_args.lora_on_audio_encoder
        ),
        modules_to_save=model_args.lora_modules_to_save,
        task_type=model_args.lora_task_type,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
    )


def describe_lora(model_args: ModelConfig, on_audio_encoder: bool) -> str:
    """The adapter in words, for model cards: rank, alpha, dropout, the modules it adapts and those trained in full."""
    targets = model_args.lora_target_modules or LANGUAGE_MODEL_LORA_TARGETS
    parts = [f"language model {'/'.join(targets)}", "projector linear_1/linear_2"]
    if on_audio_encoder:
        parts.append(f"audio encoder {'/'.join(AUDIO_ENCODER_LORA_TARGETS)}")
    method = f"LoRA r {model_args.lora_r}, alpha {model_args.lora_alpha}, dropout {model_args.lora_dropout} on "
    method += ", ".join(parts)
    if model_args.lora_modules_to_save:
        method += f"; trained in full: {', '.join(model_args.lora_modules_to_save)}"
    return method
