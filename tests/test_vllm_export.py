"""The vLLM export without vLLM: every weight round-trips through the Mistral format, an adapter splits into a
vLLM-keyed language-model LoRA plus a base with the rest merged, and what vLLM cannot serve is refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from evoxtral.model.vllm_export import (
    LORA_DIR,
    PARAMS_FILE,
    VllmExportError,
    export_for_vllm,
    load_mistral_export,
    main,
    to_interleaved_rotary,
    to_rotate_half,
    vllm_lora_key,
)

NO_CHECK = lambda *_: None  # noqa: E731  (these tests run without the vLLM environment)


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA on the SFT recipe's targets (language model + projector) with lm_head trained in full, B != 0."""
    import peft
    from trl import ModelConfig

    from evoxtral.configs import VoxtralSFTArguments
    from evoxtral.model.loading import load_model_and_processor
    from evoxtral.model.lora import voxtral_lora_config

    model, processor = load_model_and_processor("evoxtral-tiny")
    config = ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_modules_to_save=["lm_head"])
    adapted = peft.get_peft_model(model, voxtral_lora_config(config, VoxtralSFTArguments()))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    path = tmp_path_factory.mktemp("adapter")
    adapted.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path


def test_rotary_permutation_is_vllms_inverse():
    weight = torch.arange(8 * 3, dtype=torch.float32).view(8, 3)
    interleaved = to_interleaved_rotary(weight, num_heads=2)
    assert not torch.equal(interleaved, weight)
    # vLLM's Mistral loader: view(heads, d/2, 2, in).transpose(1, 2)
    assert torch.equal(interleaved.view(2, 2, 2, 3).transpose(1, 2).reshape(8, 3), weight)
    assert torch.equal(to_rotate_half(interleaved, num_heads=2), weight)


def test_base_export_round_trips_every_weight(tiny_model_and_processor, tmp_path):
    model, _ = tiny_model_and_processor
    export = export_for_vllm("evoxtral-tiny", tmp_path / "export", check=NO_CHECK)
    assert export.lora_dir is None and export.merged == []
    assert {path.name for path in export.model_dir.iterdir()} >= {
        "params.json",
        "consolidated.safetensors",
        "tekken.json",
    }
    names = load_file(export.model_dir / "consolidated.safetensors").keys()
    assert "layers.0.attention.wq.weight" in names and "output.weight" in names
    assert "mm_whisper_embeddings.whisper_encoder.embed_positions.weight" in names  # not left to vLLM's sinusoids
    state, params = load_mistral_export(export.model_dir)
    reference = model.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[name], reference[name]) for name in reference)
    assert params["n_heads"] == model.config.text_config.num_attention_heads
    assert params["multimodal"]["whisper_model_args"]["downsample_args"] == {"downsample_factor": 4}


def test_adapter_splits_into_a_vllm_lora_and_a_merged_base(lora_adapter, tmp_path, caplog):
    from peft import PeftModel

    from evoxtral.model.loading import load_model_and_processor

    export = export_for_vllm(str(lora_adapter), tmp_path / "export", check=NO_CHECK)
    assert export.merged == [
        "model.multi_modal_projector.linear_1",
        "model.multi_modal_projector.linear_2",
        "lm_head",
    ]
    assert "Merged into the exported base" in caplog.text and "multi_modal_projector" in caplog.text
    lora = load_file(export.lora_dir / "adapter_model.safetensors")
    assert lora and all(key.startswith("base_model.model.language_model.model.layers.") for key in lora)
    config = json.loads((export.lora_dir / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert config["r"] == 4 and export.lora_rank == 8  # the smallest rank vLLM's kernels take that fits
    manifest = json.loads((export.model_dir / "evoxtral_export.json").read_text())
    assert manifest["merged_into_base"] == export.merged and manifest["lora_dir"] == str(export.lora_dir)

    # exported base + the LoRA's deltas = transformers' full merge, weight by weight
    adapted, _ = load_model_and_processor(str(lora_adapter))
    assert isinstance(adapted, PeftModel)
    merged = adapted.merge_and_unload().state_dict()
    state, _ = load_mistral_export(export.model_dir)
    assert state.keys() == merged.keys()
    scale = config["lora_alpha"] / config["r"]
    for name, tensor in state.items():
        module = name.removesuffix(".weight")
        key = vllm_lora_key(module) if module.startswith("model.language_model.layers.") and "proj" in module else None
        if key:
            tensor = tensor + scale * lora[f"{key}.lora_B.weight"] @ lora[f"{key}.lora_A.weight"]
        assert torch.allclose(tensor, merged[name], atol=1e-6), name


def test_merge_all_leaves_no_lora(lora_adapter, tmp_path):
    from evoxtral.model.loading import load_model_and_processor

    export = export_for_vllm(str(lora_adapter), tmp_path / "export", merge_all=True, check=NO_CHECK)
    assert export.lora_dir is None and not (export.model_dir / LORA_DIR).exists()
    adapted, _ = load_model_and_processor(str(lora_adapter))
    merged = adapted.merge_and_unload().state_dict()
    state, _ = load_mistral_export(export.model_dir)
    assert all(torch.allclose(state[name], merged[name], atol=1e-6) for name in merged)


def test_unservable_adapters_are_refused(tiny_model_dir, tmp_path, capsys):
    import peft

    from evoxtral.model.loading import load_model_and_processor

    model, _ = load_model_and_processor("evoxtral-tiny")
    dora = peft.LoraConfig(r=4, target_modules=["q_proj"], use_dora=True)
    peft.get_peft_model(model, dora).save_pretrained(str(tmp_path / "dora"))
    with pytest.raises(VllmExportError, match="DoRA"):
        export_for_vllm(str(tmp_path / "dora"), tmp_path / "out1", check=NO_CHECK)

    model, _ = load_model_and_processor("evoxtral-tiny")
    untrained = peft.LoraConfig(r=4, target_modules=r"model\.language_model\.layers\.\d+\.self_attn\.q_proj")
    peft.get_peft_model(model, untrained).save_pretrained(str(tmp_path / "untrained"))
    with pytest.raises(VllmExportError, match="all zero"):
        export_for_vllm(str(tmp_path / "untrained"), tmp_path / "out2", check=NO_CHECK)

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["evoxtral-tiny", "--output-dir", str(occupied), "--no-check"])
    assert exit_info.value.code == 2 and "not an earlier export" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "mine" and not (occupied / PARAMS_FILE).exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="vLLM's GPU attention takes heads of 16")
def test_an_export_vllms_cpu_build_cannot_attend_with_is_refused_before_vllm_starts(tiny_model_dir, tmp_path):
    import sys

    import numpy as np

    from evoxtral.model.vllm_runner import VllmUnavailableError, run_vllm

    export = export_for_vllm("evoxtral-tiny", tmp_path / "export", check=NO_CHECK)  # 4 heads of 16
    runs = [{"name": "greedy", "max_tokens": 1}]
    with pytest.raises(VllmUnavailableError, match="head sizes .* this model's is 16.*--num-attention-heads 2"):
        run_vllm(export.model_dir, [np.zeros(16_000, np.float32)], runs, python=sys.executable)
