"""The offline tiny Voxtral loads through the real Voxtral code path and yields the real transcription prompt."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from conftest import noise_clip
from transformers import (
    AutoProcessor,
    MistralCommonBackend,
    VoxtralForConditionalGeneration,
    VoxtralProcessor,
)

from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.processor import save_processor
from evoxtral.model.tiny import build_tiny_voxtral, built_in_model_path, main, write_voxtral_tekken

TRANSCRIPTION_PROMPT = "<s>[INST][BEGIN_AUDIO]" + "[AUDIO]" * 375 + "[/INST]lang:en[TRANSCRIBE]"


def transcription_request(processor, audio):
    return processor.apply_transcription_request(
        audio=audio, model_id="mistralai/Voxtral-Mini-3B-2507", language="en", sampling_rate=16000, format="wav"
    )


def test_tiny_checkpoint_round_trip(tiny_model_dir, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert isinstance(processor, VoxtralProcessor)
    assert isinstance(processor.tokenizer, MistralCommonBackend)

    request = transcription_request(processor, noise_clip(2.0))
    ids = request["input_ids"][0].tolist()
    lang_en = processor.tokenizer.encode("lang:en", add_special_tokens=False)
    assert ids == [1, 3, 25] + [24] * 375 + [4] + lang_en + [34]
    assert processor.tokenizer.decode(ids) == TRANSCRIPTION_PROMPT
    assert tuple(request["input_features"].shape) == (1, 128, 3000)

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_model_dir)
    assert model.config.audio_token_id == 24
    assert model.config.audio_config.intermediate_size == 4 * model.config.audio_config.hidden_size
    assert model.config.text_config.vocab_size == 4096

    batch = VoxtralTranscriptionCollator(processor)([{"audio": noise_clip(2.0), "tagged_text": "[sighs] Fine."}])
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss) and loss > 0

    # Saved again by the code every stage uses, it reloads to the same model and processor.
    model.save_pretrained(tmp_path)
    save_processor(processor, tmp_path)
    reloaded = VoxtralForConditionalGeneration.from_pretrained(tmp_path)
    reloaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert transcription_request(reloaded_processor, noise_clip(2.0))["input_ids"][0].tolist() == ids
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)

    prompt = transcription_request(processor, noise_clip(2.0))
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=11)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 4)
    assert torch.equal(generated[:, : prompt["input_ids"].shape[1]], prompt["input_ids"])


def test_full_vocabulary_encodes_voxtral_ids(tmp_path):
    """Uncut, the tokenizer made from mistral-common's vocabulary gives the released Voxtral ids."""
    tokenizer = MistralCommonBackend(tokenizer_path=str(write_voxtral_tekken(tmp_path / "tekken.json", 131072)))
    assert tokenizer.encode("lang:en", add_special_tokens=False) == [9909, 1058, 1262]
    assert [tokenizer.convert_ids_to_tokens(i) for i in (1, 3, 4, 11, 24, 25, 34)] == [
        "<s>",
        "[INST]",
        "[/INST]",
        "<pad>",
        "[AUDIO]",
        "[BEGIN_AUDIO]",
        "[TRANSCRIBE]",
    ]


def test_vocabulary_too_small_for_bytes_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="at least 1256"):
        write_voxtral_tekken(tmp_path / "tekken.json", 1200)


def test_sizes_are_parameters(tmp_path):
    folder = build_tiny_voxtral(tmp_path, vocab_size=2048, text_layers=1, audio_layers=1, hidden_size=32)
    config = json.loads((folder / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 2048
    assert config["text_config"]["num_hidden_layers"] == config["audio_config"]["num_hidden_layers"] == 1
    assert config["audio_config"]["intermediate_size"] == 128
    model = VoxtralForConditionalGeneration.from_pretrained(folder)
    assert model.lm_head.weight.shape == (2048, 32)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    sizes = dict(vocab_size=1256, text_layers=1, audio_layers=1, hidden_size=16, num_attention_heads=2)
    first, second, other = (
        VoxtralForConditionalGeneration.from_pretrained(build_tiny_voxtral(tmp_path / name, seed=seed, **sizes))
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert torch.equal(first.lm_head.weight, second.lm_head.weight)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def test_concurrent_first_use_builds_one_complete_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOXTRAL_CACHE", str(tmp_path))
    results, errors = [], []

    def build():
        try:
            results.append(built_in_model_path())
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results[0] == results[1]
    assert [entry.name for entry in tmp_path.iterdir()] == [results[0].name]  # no staging folder left over
    assert AutoProcessor.from_pretrained(results[0]).tokenizer.pad_token_id == 11


def test_cli_builds_a_custom_size_and_reports_it(tmp_path, capsys):
    main(["--output-dir", str(tmp_path), "--hidden-size", "32", "--vocab-size", "2048"])
    printed = capsys.readouterr().out
    assert str(tmp_path) in printed and "M parameters" in printed
    assert json.loads((tmp_path / "config.json").read_text())["text_config"]["hidden_size"] == 32


def test_cli_refuses_custom_sizes_into_the_shared_cache(capsys):
    with pytest.raises(SystemExit):
        main(["--hidden-size", "32"])
    assert "--output-dir is required" in capsys.readouterr().err
