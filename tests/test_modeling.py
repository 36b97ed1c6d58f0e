"""Model loading: built-in names, folders, adapters, merged models, and clear errors when nothing can load."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import noise_clip
from peft import LoraConfig, PeftModel, get_peft_model

from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.loading import ModelLoadError, load_model_and_processor
from evoxtral.model.processor import save_processor


@pytest.fixture(scope="module")
def batch(tiny_processor):
    return VoxtralTranscriptionCollator(tiny_processor)([{"audio": noise_clip(1.0), "tagged_text": "[gasps] No!"}])


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights (a fresh one is a no-op), saved with its processor."""
    model, processor = load_model_and_processor("evoxtral-tiny", trainable=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    save_processor(processor, folder)
    return folder, peft_model.eval()


def test_missing_local_folder_names_the_offline_default(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder") as error:
        load_model_and_processor(str(tmp_path / "nowhere"))
    assert "evoxtral-tiny" in str(error.value)


def test_unreachable_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_model_and_processor("mistralai/Voxtral-Mini-3B-2507")
    message = str(error.value)
    assert "mistralai/Voxtral-Mini-3B-2507" in message
    assert "HF_HUB_OFFLINE" in message and "evoxtral-tiny" in message


def test_malformed_hub_id_is_reported():
    with pytest.raises(ModelLoadError, match="neither a folder nor a valid hub id"):
        load_model_and_processor("not a model id!")


def test_folder_without_a_model_is_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ModelLoadError, match="not a model or adapter folder"):
        load_model_and_processor(tmp_path)


def test_built_in_model_is_frozen_for_inference_unless_trainable(tiny_model_dir):
    frozen, processor = load_model_and_processor("evoxtral-tiny")
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert processor.tokenizer.pad_token_id == 11
    trainable, _ = load_model_and_processor("evoxtral-tiny", trainable=True, dtype="bfloat16")
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    assert trainable.dtype == torch.bfloat16
    assert trainable.name_or_path == "evoxtral-tiny"  # what adapters record as their base model


def test_random_init_keeps_architecture_changes_weights(tiny_model_dir):
    pretrained, _ = load_model_and_processor("evoxtral-tiny")
    scratch, _ = load_model_and_processor("evoxtral-tiny", random_init=True, trainable=True)
    assert pretrained.config.to_dict()["text_config"] == scratch.config.to_dict()["text_config"]
    assert not torch.equal(pretrained.lm_head.weight, scratch.lm_head.weight)


def test_adapter_folder_loads_on_its_recorded_base(trained_adapter, batch):
    folder, reference = trained_adapter
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "evoxtral-tiny"
    from_folder, processor = load_model_and_processor(folder)
    explicit, _ = load_model_and_processor("evoxtral-tiny", adapter=folder)
    assert isinstance(from_folder, PeftModel) and isinstance(explicit, PeftModel)
    with torch.no_grad():
        expected = reference(**batch).logits
        assert torch.allclose(from_folder(**batch).logits, expected, atol=1e-5)
        assert torch.allclose(explicit(**batch).logits, expected, atol=1e-5)
    assert not any(p.requires_grad for p in from_folder.parameters())


def test_adapter_can_be_loaded_trainable(trained_adapter):
    model, _ = load_model_and_processor(trained_adapter[0], trainable=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)


def test_merged_model_folder_loads_like_base_plus_adapter(trained_adapter, batch, tmp_path):
    folder, reference = trained_adapter
    merged_reference, processor = load_model_and_processor(folder)
    merged = merged_reference.merge_and_unload()
    merged.save_pretrained(tmp_path)
    save_processor(processor, tmp_path)
    reloaded, _ = load_model_and_processor(tmp_path)
    assert not isinstance(reloaded, PeftModel)
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, reference(**batch).logits, atol=1e-4)
