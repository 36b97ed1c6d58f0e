"""The SFT recipe: LoRA targets, data loading, NEFTune, an accelerate run end to end, resume, merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import torch
from conftest import noise_clip
from peft import PeftModel, get_peft_model
from safetensors import safe_open
from transformers import TrainerCallback
from trl import DatasetMixtureConfig
from trl.scripts.utils import DatasetConfig

from evoxtral.configs import make_sft_parser
from evoxtral.data.splits import load_training_splits
from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.inference import transcribe
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.lora import voxtral_lora_config
from evoxtral.model.merge import main as merge_main
from evoxtral.publishing.recipe import recipe_from_argv
from evoxtral.training.sft import build_sft_trainer, load_sft_model, prepare_sft_dataset
from evoxtral.utils.checkpoints import last_complete_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "recipes" / "tiny" / "sft.yaml"
LANGUAGE_MODEL = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def parse(*flags: str):
    return make_sft_parser().parse_args_and_config(["--config", str(TINY_RECIPE), *flags])


def lora_modules(model) -> set[str]:
    return {
        name.removeprefix("base_model.model.") for name, module in model.named_modules() if hasattr(module, "lora_A")
    }


def expected_language_model_modules(model) -> set[str]:
    return {
        name
        for name, _ in model.named_modules()
        if name.startswith("model.language_model.layers.") and name.rsplit(".", 1)[-1] in LANGUAGE_MODEL
    }


@pytest.mark.parametrize("on_encoder", [False, True])
def test_lora_targets_are_explicit(tiny_model_dir, on_encoder):
    _, _, model_args, _, sft_args = parse("--lora_on_audio_encoder", str(on_encoder))
    model, _ = load_sft_model(model_args, sft_args)
    expected = expected_language_model_modules(model) | {
        "model.multi_modal_projector.linear_1",
        "model.multi_modal_projector.linear_2",
    }
    if on_encoder:  # what the original's suffix match caught: the encoder's q/k/v, not out_proj or the MLP
        expected |= {
            name
            for name, _ in model.named_modules()
            if name.startswith("model.audio_tower.layers.") and name.endswith(("q_proj", "k_proj", "v_proj"))
        }
    peft_model = get_peft_model(model, voxtral_lora_config(model_args, sft_args))
    assert lora_modules(peft_model) == expected
    encoder_trainable = [n for n, p in peft_model.named_parameters() if "audio_tower" in n and p.requires_grad]
    assert bool(encoder_trainable) == on_encoder


def test_full_fine_tuning_freezes_only_the_encoder(tiny_model_dir):
    _, _, model_args, _, sft_args = parse("--use_peft", "false", "--random_init", "true")
    model, _ = load_sft_model(model_args, sft_args)
    assert voxtral_lora_config(model_args, sft_args) is None
    assert not any(p.requires_grad for p in model.model.audio_tower.parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())
    assert all(p.requires_grad for p in model.model.multi_modal_projector.parameters())
    pretrained, _ = load_model_and_processor("evoxtral-tiny")
    assert not torch.equal(model.lm_head.weight, pretrained.lm_head.weight)


def test_splits_from_a_saved_dataset_and_mixtures(tiny_sft_dataset):
    script_args, _, _, mixture, _ = parse("--dataset_name", tiny_sft_dataset)
    train, evaluation = load_training_splits(script_args, mixture, seed=0)
    assert (len(train), len(evaluation)) == (32, 4)

    sources = [
        DatasetConfig(path=tiny_sft_dataset, split="train", columns=["id", "audio", "tagged_text"]),
        DatasetConfig(path=tiny_sft_dataset, split="test", columns=["id", "audio", "tagged_text"]),
    ]
    train, evaluation = load_training_splits(script_args, DatasetMixtureConfig(datasets=sources), seed=0)
    assert len(train) == 32 + 4 and train.column_names == ["id", "audio", "tagged_text"]  # no fractions: concatenated
    assert len(evaluation) == 4 + 4  # each source's validation split

    for source in sources:
        source.fraction = 0.5
    train, _ = load_training_splits(script_args, DatasetMixtureConfig(datasets=sources), seed=0)
    test_ids = set(datasets.load_from_disk(tiny_sft_dataset)["test"]["id"])
    ids = train["id"]
    # TRL's rule: equal shares of the largest mixture that repeats no row, so the 4 test rows and 4 train rows
    assert len(ids) == len(set(ids)) == 4 + 4
    assert test_ids == set(ids[4:]) and len(set(ids[:4]) - test_ids) == 4


def test_missing_columns_are_named(tiny_sft_dataset, tiny_processor):
    script_args, _, _, mixture, sft_args = parse("--dataset_name", tiny_sft_dataset, "--text_column", "caption")
    train, _ = load_training_splits(script_args, mixture, seed=0)
    with pytest.raises(KeyError, match="caption"):
        prepare_sft_dataset(train, sft_args, tiny_processor, limit=None, num_proc=None)


class EmbeddingNoiseProbe(TrainerCallback):
    """Records, for every forward of the text embedding, whether it trained and how far NEFTune moved it."""

    def __init__(self):
        self.records: list[tuple[bool, float]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Registered after NEFTune's hook (activated before this event), so it sees the noisy output.
        self.embeddings = model.get_input_embeddings()

        def record(module, inputs, output):
            clean = torch.nn.functional.embedding(inputs[0], module.weight)
            self.records.append((module.training, (output - clean).abs().max().item()))

        self.embeddings.register_forward_hook(record)


def test_neftune_noise_in_training_only(tiny_sft_dataset, tmp_path):
    trainer, _ = build_sft_trainer(
        *parse(
            "--dataset_name", tiny_sft_dataset, "--output_dir", str(tmp_path), "--max_steps", "2",
            "--per_device_train_batch_size", "2", "--eval_steps", "1", "--max_eval_samples", "2",
            "--save_strategy", "no", "--generation_eval_samples", "0", "--report_to", "none",
            "--max_train_samples", "4", "--precompute_features", "true",
        )
    )  # fmt: skip
    assert trainer.data_collator.features_column == "input_features"  # log-mel computed once, before training
    assert trainer.train_dataset["input_features"][0] is not None
    probe = EmbeddingNoiseProbe()
    trainer.add_callback(probe)
    trainer.train()
    training = [noise for is_training, noise in probe.records if is_training]
    evaluation = [noise for is_training, noise in probe.records if not is_training]
    assert len(training) == 2 and evaluation
    # alpha / sqrt(L d) with L >= 376 prompt tokens, d = 64: the noise is on, and scaled by neftune_noise_alpha 5
    assert all(0 < noise <= 5 / (376 * 64) ** 0.5 for noise in training)
    assert all(noise == 0 for noise in evaluation)
    probe.records.clear()
    ids = torch.tensor([[1, 3, 4]])
    trainer.model.train()
    probe.embeddings(ids)
    assert probe.records == [(True, 0.0)]  # NEFTune is removed once training ends


def run_recipe(output_dir: Path, log: Path, *flags: str, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start the recipe as a user would; its output goes to `log` (a pipe nobody reads could stall it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, *launcher, str(REPO / "recipes" / "sft.py"), "--config", str(TINY_RECIPE)]
    command += ["--output_dir", str(output_dir), "--report_to", "none", *flags]
    with log.open("w") as sink:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    process.wait(timeout=timeout)
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tiny_sft_dataset, tmp_path_factory):
    """One tiny SFT run through `accelerate launch` on CPU, as `make sft` starts it."""
    output_dir = tmp_path_factory.mktemp("sft") / "run"
    log = output_dir.parent / "run.log"
    flags = [
        "--dataset_name", tiny_sft_dataset, "--max_steps", "16", "--logging_steps", "2", "--eval_steps", "16",
        "--save_steps", "16", "--generation_eval_samples", "2", "--generation_max_new_tokens", "8",
    ]  # fmt: skip
    launcher = ("-m", "accelerate.commands.launch", "--num_processes", "1")
    output = finish(run_recipe(output_dir, log, *flags, launcher=launcher), log)
    return output_dir, output


def test_accelerate_run_lowers_the_loss_and_scores_generations(trained_run):
    output_dir, output = trained_run
    history = json.loads((output_dir / "checkpoint-16" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.5
    bench = next(entry for entry in history if "eval_tag_f1" in entry)  # the generation-based evaluation
    assert {"eval_wer", "eval_cer", "eval_emphasis_f1"} <= set(bench) and bench["eval_num_samples"] == 2
    assert "SFT done: 16 steps" in output and "Evoxtral-Bench: wer" in output


def test_run_writes_a_loadable_adapter_without_encoder_lora(trained_run):
    output_dir, _ = trained_run
    with safe_open(output_dir / "adapter_model.safetensors", framework="pt") as weights:
        names = list(weights.keys())
    assert any("language_model" in name and "lora_A" in name for name in names)
    assert any("multi_modal_projector.linear_1.lora_A" in name for name in names)
    assert not any("audio_tower" in name for name in names)
    model, processor = load_model_and_processor(output_dir)
    assert isinstance(model, PeftModel)
    (text,) = transcribe(model, processor, [noise_clip(1.0)], max_new_tokens=4, progress=False)
    assert isinstance(text, str)


def test_model_card_carries_the_bench_table_and_the_recipe(trained_run):
    output_dir, _ = trained_run
    card = (output_dir / "README.md").read_text()
    assert "library_name: peft" in card and "## Evoxtral-Bench" in card and "| tag_f1 |" in card
    assert "model_name_or_path: evoxtral-tiny" in card and "# command-line overrides: " in card
    assert "| method | LoRA r 16, alpha 32, dropout 0.0 on language model q_proj/" in card
    assert "projector linear_1/linear_2; trained in full: lm_head |" in card and "audio encoder" not in card
    recipe = (output_dir / "recipe.yaml").read_text()
    assert recipe.startswith(TINY_RECIPE.read_text()) and "--max_steps 16" in recipe.splitlines()[-1]
    assert recipe_from_argv(["--config", str(TINY_RECIPE), "--max_steps", "16"]).endswith(
        "# command-line overrides: --max_steps 16\n"
    )


def test_merge_gives_a_plain_model_with_the_same_outputs(trained_run, tmp_path, capsys):
    output_dir, _ = trained_run
    merged_dir = merge_main([str(output_dir), "--output-dir", str(tmp_path / "merged")])
    assert "Merged" in capsys.readouterr().out
    merged, processor = load_model_and_processor(merged_dir)
    adapted, _ = load_model_and_processor(output_dir)
    assert not isinstance(merged, PeftModel)
    batch = VoxtralTranscriptionCollator(processor)([{"audio": noise_clip(1.0), "tagged_text": "[sighs] Well."}])
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-4)


def test_resume_after_a_kill_continues_from_the_checkpoint_step(tiny_model_dir, tiny_sft_dataset, tmp_path):
    flags = [
        "--dataset_name", tiny_sft_dataset, "--max_steps", "6", "--save_steps", "2", "--logging_steps", "1",
        "--eval_strategy", "no", "--per_device_train_batch_size", "2",
    ]  # fmt: skip
    output_dir, log = tmp_path / "run", tmp_path / "run.log"
    first = run_recipe(output_dir, log, *flags)
    deadline = time.monotonic() + 300
    while not (output_dir / "checkpoint-2" / "trainer_state.json").exists():
        assert first.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # an interruption: no chance to clean up
    first.wait()
    resumed_from = int(Path(last_complete_checkpoint(output_dir)).name.split("-")[1])
    assert resumed_from < 6

    output = finish(run_recipe(output_dir, log, *flags), log)
    assert f"Resuming from {output_dir / f'checkpoint-{resumed_from}'}" in output
    final = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert final["global_step"] == 6
    logged_steps = [entry["step"] for entry in final["log_history"] if "loss" in entry]
    assert logged_steps == [1, 2, 3, 4, 5, 6]  # the checkpoint's history, then the steps after it, once each
    assert output.count("'loss'") == 6 - resumed_from  # only the remaining steps were trained again


def test_a_checkpoint_cut_short_is_passed_over(tmp_path, capsys):
    for step, state in ((2, "{}"), (4, '{"global_'), (6, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-9-old").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert "checkpoint-6: the run stopped while saving it" in capsys.readouterr().out
    assert last_complete_checkpoint(tmp_path / "nothing here") is None


@pytest.mark.parametrize("config", sorted((REPO / "accelerate_configs").glob("*.yaml")), ids=lambda path: path.stem)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import ClusterConfig

    loaded = ClusterConfig.from_yaml_file(config)
    assert loaded.mixed_precision == "bf16" and loaded.num_processes >= 1


def test_collator_settings_go_on_a_copy_and_a_recipe_that_set_them_is_warned(tmp_path, caplog):
    import logging

    from trl import SFTConfig

    from evoxtral.training.sft import with_collator_settings

    recipe = SFTConfig(output_dir=str(tmp_path), max_length=512, use_cpu=True, report_to="none")
    with caplog.at_level(logging.WARNING):
        trainer_args = with_collator_settings(recipe)
    assert (trainer_args.max_length, trainer_args.remove_unused_columns) == (None, False)
    assert trainer_args.dataset_kwargs == {"skip_prepare_dataset": True}
    assert (recipe.max_length, recipe.remove_unused_columns, recipe.dataset_kwargs) == (512, True, None)
    assert "max_length: 512 replaced by None" in caplog.text and "remove_unused_columns" not in caplog.text
