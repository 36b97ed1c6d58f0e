"""SFT fast paths in the recipe's own trainer: each gives the loss and LoRA gradients of the plain path.

The trainers come from `build_sft_trainer` with the tiny recipe, as `recipes/sft.py` builds them. LoRA weights are
set to the same non-zero values in every trainer, so the A matrices get gradients too (B starts at zero).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import noise_clip
from transformers.trainer_pt_utils import LengthGroupedSampler

from evoxtral.configs import make_sft_parser
from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.encoder_cache import ENCODER_STATES_COLUMN, audio_encoder
from evoxtral.throughput import save_speech_dataset, tagged_transcripts
from evoxtral.training.sft import build_sft_trainer

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "recipes" / "tiny" / "sft.yaml"
REAL_RECIPE = REPO / "recipes" / "voxtral-mini-3b" / "sft" / "config_lora.yaml"
# Two clips over 30 s (two chunks each) among short ones: lengths differ by 375 audio tokens.
CLIP_SECONDS = (1.0, 31.0, 2.0, 33.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from threads, and on a busy machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech_dataset(tmp_path_factory, evoxtral_cache):
    clips = [noise_clip(seconds, seed=index) for index, seconds in enumerate(CLIP_SECONDS)]
    texts = tagged_transcripts(len(clips), mean_words=8, seed=1)
    return save_speech_dataset(tmp_path_factory.mktemp("speech") / "dataset", clips, texts)


def build(speech_dataset, tmp_path, *flags: str):
    arguments = make_sft_parser().parse_args_and_config(
        [
            "--config", str(TINY_RECIPE), "--dataset_name", str(speech_dataset), "--output_dir", str(tmp_path),
            "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--generation_eval_samples", "0",
            "--per_device_train_batch_size", "2", *flags,
        ]
    )  # fmt: skip
    trainer, _ = build_sft_trainer(*arguments)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in sorted(trainer.model.named_parameters()):
            if "lora_" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return trainer


def rows(trainer):
    return [trainer.train_dataset[index] for index in range(len(trainer.train_dataset))]


def loss_and_gradients(trainer, batch, *, fused: bool = True):
    """One training step's loss and gradients, through the trainer's own loss (fused LM head) or the model's."""
    model = trainer.model
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch)) if fused else model(**batch).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def assert_same_step(first, second, rtol=1e-5, atol=1e-7):
    (first_loss, first_gradients), (second_loss, second_gradients) = first, second
    assert second_loss == pytest.approx(first_loss, rel=rtol)
    assert set(first_gradients) == set(second_gradients)
    lora = [name for name in first_gradients if "lora_A" in name or "lora_B" in name]
    assert lora and all(first_gradients[name].abs().sum() > 0 for name in lora)
    for name, gradient in first_gradients.items():
        torch.testing.assert_close(second_gradients[name], gradient, rtol=rtol, atol=atol, msg=name)


def test_fused_lm_head_is_active_and_equals_the_plain_loss(speech_dataset, tmp_path):
    trainer = build(speech_dataset, tmp_path)
    batch = trainer.data_collator(rows(trainer))
    lm_head_calls = []
    hook = trainer.model.get_output_embeddings().register_forward_hook(lambda *_: lm_head_calls.append(1))
    try:
        fused = loss_and_gradients(trainer, batch)
        assert lm_head_calls == []  # TRL's fused head scores target positions from lm_head.weight, in tiles
        plain = loss_and_gradients(trainer, batch, fused=False)
        assert lm_head_calls == [1]  # the model's own forward: full logits, then Hugging Face's loss
    finally:
        hook.remove()
    assert_same_step(plain, fused)


def test_audio_encoder_cache_in_the_recipe(speech_dataset, tmp_path):
    trainer = build(speech_dataset, tmp_path, "--audio_encoder_cache", "true")
    assert trainer.data_collator.features_column == ENCODER_STATES_COLUMN
    cached_batch = trainer.data_collator(rows(trainer))
    live_batch = VoxtralTranscriptionCollator(trainer.processing_class)(rows(trainer))
    assert cached_batch["input_features"].shape == (1 + 2 + 1 + 2, 1500, 64)
    encoder_calls = []
    hook = audio_encoder(trainer.model).conv1.register_forward_hook(lambda *_: encoder_calls.append(1))
    try:
        cached = loss_and_gradients(trainer, cached_batch)
        assert encoder_calls == []
        live = loss_and_gradients(trainer, live_batch)
        assert encoder_calls == [1]
    finally:
        hook.remove()
    assert_same_step(live, cached)


def test_audio_encoder_cache_refuses_a_trained_encoder(speech_dataset, tmp_path):
    with pytest.raises(ValueError, match="needs a frozen audio encoder"):
        build(speech_dataset, tmp_path, "--audio_encoder_cache", "true", "--lora_on_audio_encoder", "true")


def test_activation_checkpointing_changes_nothing(speech_dataset, tmp_path):
    trainer = build(speech_dataset, tmp_path)
    batch = trainer.data_collator(rows(trainer))
    without = loss_and_gradients(trainer, batch)
    checkpointed = build(speech_dataset, tmp_path, "--activation_checkpointing", "true")
    checkpointed.model.activation_checkpointing_enable()  # what Trainer.train does with activation_checkpointing
    assert checkpointed.model.is_activation_checkpointing
    assert_same_step(without, loss_and_gradients(checkpointed, batch))


def test_the_voxtral_recipe_turns_the_fast_paths_on():
    flags = ["--config", str(REAL_RECIPE), "--bf16", "false", "--use_cpu", "true"]  # parsed here, on a CPU
    _, training_args, _, _, sft_args = make_sft_parser().parse_args_and_config(flags)
    assert training_args.activation_checkpointing is False  # SFTConfig's default is True
    assert training_args.train_sampling_strategy == "group_by_length"
    assert sft_args.audio_encoder_cache is True and sft_args.lora_on_audio_encoder is False


def test_sdpa_and_eager_attention_agree(speech_dataset, tmp_path):
    sdpa = build(speech_dataset, tmp_path, "--attn_implementation", "sdpa")
    eager = build(speech_dataset, tmp_path, "--attn_implementation", "eager")
    assert sdpa.model.config._attn_implementation == "sdpa" and eager.model.config._attn_implementation == "eager"
    batch = sdpa.data_collator(rows(sdpa))
    assert_same_step(loss_and_gradients(eager, batch), loss_and_gradients(sdpa, batch), rtol=1e-4, atol=1e-6)


def test_group_by_length_samples_by_the_collated_lengths(speech_dataset, tmp_path):
    trainer = build(speech_dataset, tmp_path, "--train_sampling_strategy", "group_by_length")
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    lengths = [int(trainer.data_collator([row])["attention_mask"].sum()) for row in rows(trainer)]
    assert list(sampler.lengths) == lengths
    assert max(lengths) - min(lengths) > 300  # two-chunk clips among one-chunk ones: lengths worth grouping
    assert sorted(iter(sampler)) == list(range(len(lengths)))  # every row once an epoch


def test_fast_paths_together_evaluate(speech_dataset, tmp_path):
    """Evaluation batches are length-grouped too and read the cached states: the eval split needs both columns."""
    trainer = build(
        speech_dataset, tmp_path, "--audio_encoder_cache", "true", "--train_sampling_strategy", "group_by_length",
        "--eval_strategy", "steps", "--dataset_test_split", "train", "--per_device_eval_batch_size", "2",
    )  # fmt: skip
    assert {"length", ENCODER_STATES_COLUMN} <= set(trainer.eval_dataset.column_names)
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))
