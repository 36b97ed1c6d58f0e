"""Cached audio-encoder states: same batches, same loss and LoRA gradients as running the encoder, encoder skipped."""

from __future__ import annotations

import copy

import datasets
import numpy as np
import pytest
import torch
from conftest import encode, noise_clip
from peft import LoraConfig, get_peft_model

from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.encoder_cache import ENCODER_STATES_COLUMN, accept_audio_encoder_states, add_audio_encoder_states
from evoxtral.utils.arrays import as_array

# LoRA on the language model's attention and on the projector, none on the encoder (the recipe's default targets).
LORA_TARGETS = (
    r"model\.(?:language_model\.layers\.\d+\.self_attn\.(?:q_proj|v_proj)|multi_modal_projector\.linear_[12])"
)


@pytest.fixture(scope="module")
def table():
    clips = [noise_clip(2.0, seed=11), noise_clip(31.0, seed=12), noise_clip(5.0, seed=13)]
    return datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": encode(clip, 16000), "path": None} for clip in clips],
            "tagged_text": ["[laughs] Oh, REALLY?", "Two chunks of [sighs] audio.", "Fine."],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=16000, decode=False))


@pytest.fixture(scope="module")
def lora_model(tiny_model_and_processor):
    base, _ = tiny_model_and_processor
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=LORA_TARGETS, init_lora_weights=False))
    model.train()
    return model


def loss_and_gradients(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_cached_states_give_the_same_loss_and_gradients_without_running_the_encoder(table, lora_model, tiny_processor):
    with_states = add_audio_encoder_states(table, lora_model, tiny_processor)
    live_batch = VoxtralTranscriptionCollator(tiny_processor)(list(table))
    cached_batch = VoxtralTranscriptionCollator(tiny_processor, features_column=ENCODER_STATES_COLUMN)(
        list(with_states)
    )
    for name in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(live_batch[name], cached_batch[name]), name
    assert cached_batch["input_features"].shape == (1 + 2 + 1, 1500, 64)

    accept_audio_encoder_states(lora_model)
    encoder_calls = []
    hook = lora_model.get_base_model().model.audio_tower.conv1.register_forward_hook(
        lambda *_: encoder_calls.append(1)
    )
    try:
        live_loss, live_gradients = loss_and_gradients(lora_model, live_batch)
        assert len(encoder_calls) == 1
        cached_loss, cached_gradients = loss_and_gradients(lora_model, cached_batch)
        assert len(encoder_calls) == 1  # the cached batch never entered the encoder
    finally:
        hook.remove()
    assert cached_loss == pytest.approx(live_loss, rel=1e-6)
    assert set(cached_gradients) == set(live_gradients)
    projector_gradients = [name for name in live_gradients if "multi_modal_projector" in name]
    assert projector_gradients and all(live_gradients[name].abs().sum() > 0 for name in projector_gradients)
    for name, gradient in live_gradients.items():
        torch.testing.assert_close(cached_gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_float16_storage_stays_within_tolerance(table, lora_model, tiny_processor):
    with_states = add_audio_encoder_states(table, lora_model, tiny_processor, storage_dtype="float16")
    stored = [as_array(row[ENCODER_STATES_COLUMN]) for row in with_states]
    assert [array.dtype for array in stored] == [np.float16] * 3  # half the disk of float32
    assert [array.shape for array in stored] == [(1, 1500, 64), (2, 1500, 64), (1, 1500, 64)]
    accept_audio_encoder_states(lora_model)
    live_loss, _ = loss_and_gradients(lora_model, VoxtralTranscriptionCollator(tiny_processor)(list(table)))
    collator = VoxtralTranscriptionCollator(tiny_processor, features_column=ENCODER_STATES_COLUMN)
    cached_loss, _ = loss_and_gradients(lora_model, collator(list(with_states)))
    assert cached_loss == pytest.approx(live_loss, rel=1e-3)


def test_cache_key_follows_the_encoder_weights(table, lora_model, tiny_processor):
    first = add_audio_encoder_states(table, lora_model, tiny_processor)
    assert add_audio_encoder_states(table, lora_model, tiny_processor)._fingerprint == first._fingerprint
    changed = copy.deepcopy(lora_model)
    with torch.no_grad():
        changed.get_base_model().model.audio_tower.layer_norm.bias.add_(0.5)
    recomputed = add_audio_encoder_states(table, changed, tiny_processor)
    assert recomputed._fingerprint != first._fingerprint
    assert not (as_array(recomputed[0][ENCODER_STATES_COLUMN]) == as_array(first[0][ENCODER_STATES_COLUMN])).all()


@pytest.mark.parametrize("storage_dtype", ["float32", "float16"])
def test_array_rows_give_the_batches_the_list_rows_gave(table, lora_model, tiny_processor, storage_dtype):
    """The `.npy` bytes column against the same states in an Array3D column read as nested lists (the old path)."""
    with_states = add_audio_encoder_states(table, lora_model, tiny_processor, storage_dtype=storage_dtype)
    states = [as_array(row[ENCODER_STATES_COLUMN]) for row in with_states]
    as_lists = table.add_column(ENCODER_STATES_COLUMN, [array.tolist() for array in states]).cast_column(
        ENCODER_STATES_COLUMN, datasets.Array3D(shape=(None, 1500, 64), dtype=storage_dtype)
    )
    assert isinstance(as_lists[0][ENCODER_STATES_COLUMN], list)
    collator = VoxtralTranscriptionCollator(tiny_processor, features_column=ENCODER_STATES_COLUMN)
    from_arrays, from_lists = collator(list(with_states)), collator(list(as_lists))
    assert set(from_arrays) == set(from_lists)
    for name in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(from_arrays[name], from_lists[name]), name
    # Bit for bit: float16 values widen to float32 exactly, so the list path's float32 batch holds the same numbers.
    assert from_arrays["input_features"].dtype == getattr(torch, storage_dtype)
    assert torch.equal(from_arrays["input_features"].float(), from_lists["input_features"])
