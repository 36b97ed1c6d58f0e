"""The eval recipe's pieces: model specs, the mismatched-audio derangement, the tables and the chart."""

import pytest

from evoxtral.evaluation.decoding import CHANCE_LABEL, MISMATCHED_SUFFIX, ModelSpec, mismatched_audio_order
from evoxtral.evaluation.plots import plot_per_tag_f1
from evoxtral.evaluation.report import render_core_table, render_per_tag_table, render_report
from evoxtral.scoring.evoxtral_bench import compute_metrics


def test_model_spec_parse():
    assert ModelSpec.parse("base=evoxtral-tiny") == ModelSpec("base", "evoxtral-tiny")
    assert ModelSpec.parse(" sft = org/model + out/sft ") == ModelSpec("sft", "org/model", "out/sft")
    for bad in ("evoxtral-tiny", "=model", "label="):
        with pytest.raises(ValueError, match="LABEL=MODEL"):
            ModelSpec.parse(bad)


def test_mismatched_audio_order_is_a_seeded_derangement():
    for n in (2, 3, 7, 50):
        order = mismatched_audio_order(n, seed=n)
        assert sorted(order) == list(range(n))
        assert all(source != index for index, source in enumerate(order))
    assert mismatched_audio_order(20, seed=1) == mismatched_audio_order(20, seed=1)
    assert mismatched_audio_order(20, seed=1) != mismatched_audio_order(20, seed=2)
    with pytest.raises(ValueError, match="at least 2"):
        mismatched_audio_order(1)


REFERENCES = ["[sighs] one two", "[laughs] three", "four [laughs]", "five six"]


def _results():
    base = ["one two", "three", "four", "five six"]
    tuned = ["[sighs] one two", "[laughs] three", "four", "five six seven"]
    return {
        label: {
            protocol: compute_metrics(predictions, REFERENCES, protocol=protocol)
            for protocol in ("corpus", "evoxtral")
        }
        for label, predictions in (("base", base), ("sft", tuned))
    }


def test_core_table_puts_models_side_by_side_and_names_the_best():
    table = render_core_table(_results(), "evoxtral").splitlines()
    assert table[0] == "| Metric | base | sft | Best |"
    rows = {line.split(" | ")[0].strip("| "): line for line in table[2:]}
    # base: no tags, 1 of 4 clips tag-free -> 25.0% under per-clip averaging; sft: 1 + 1 + 0 + 1 -> 75.0%
    assert rows["Tag F1 ↑"] == "| Tag F1 ↑ | 25.0% | **75.0%** | sft |"
    # WER: base 0.0, sft 1/2 on clip 4 -> mean 12.5%
    assert rows["WER ↓"] == "| WER ↓ | **0.00%** | 12.50% | base |"
    assert rows["Tag Hallucination ↓"] == "| Tag Hallucination ↓ | 0.0% | 0.0% | — |"
    corpus = render_core_table(_results(), "corpus")
    assert "| Tag F1 ↑ | 0.0% | **80.0%** | sft |" in corpus  # tp 2, fp 0, fn 1


def test_core_table_shows_intervals():
    results = {"base": {"corpus": compute_metrics(["a [sighs]"] * 3, ["a [sighs]"] * 3, bootstrap=20)}}
    assert "| Tag F1 ↑ | 100.0% [100.0, 100.0] | — |" in render_core_table(results, "corpus")


def test_per_tag_table_orders_by_support_with_relative_change():
    table = render_per_tag_table(_results(), "corpus").splitlines()
    assert table[0] == "| Tag | base F1 | sft F1 | Δ | Support |"
    assert table[2] == "| `[laughs]` | 0.000 | 0.667 | n/a | 2 |"
    assert table[3] == "| `[sighs]` | 0.000 | 1.000 | n/a | 1 |"
    single = render_per_tag_table({"sft": _results()["sft"]}, "corpus").splitlines()
    assert single[0] == "| Tag | sft F1 | Support |"


def test_report_and_chart(tmp_path):
    results = _results()
    results["sft" + MISMATCHED_SUFFIX] = results["base"]
    details = {"dataset": "toy", "split": "test", "max_new_tokens": 8, "bootstrap": 0, "skipped": ["clip x: empty"]}
    report = render_report(results, ["corpus", "evoxtral"], details)
    assert report.count("## Table 2") == 2 and report.count("## Table 3") == 2
    assert "### sft, corpus protocol" in report
    assert "| Tag | sft F1 | sft (other audio) F1 | Δ | Support |" in report
    assert "- clip x: empty" in report
    chart = plot_per_tag_f1(results, "corpus", tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- Decoding, resume and the CLI on the tiny model ----------------------------------------------------------------


def _wav_bytes(seconds: float, frequency: float) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    time = np.arange(int(seconds * 16_000)) / 16_000
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * frequency * time)).astype(np.float32), 16_000, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Four tone clips in the data_gen schema (one with broken audio), saved with save_to_disk."""
    import datasets

    from evoxtral.scoring import tags

    texts = ["[sighs] one two", "[laughs] three", "four [laughs] five", "six SEVEN", "eight"]
    audio = [{"bytes": _wav_bytes(0.5 + 0.1 * i, 220 * (i + 1)), "path": f"clip{i}.wav"} for i in range(5)]
    audio[3] = {"bytes": b"not audio at all", "path": "clip3.wav"}
    columns = {
        "id": [f"clip{i}" for i in range(5)],
        "audio": audio,
        "tagged_text": texts,
        "plain_text": [tags.plain_text(text) for text in texts],
        "tags": [tags.tag_names(text) for text in texts],
        "slice": ["light"] * 5,
        "domain": ["conversation"] * 5,
        "voice": ["tone"] * 5,
        "backend": ["tone"] * 5,
        "duration": [0.5 + 0.1 * i for i in range(5)],
    }
    test = datasets.Dataset.from_dict(columns).cast_column("audio", datasets.Audio(sampling_rate=16_000))
    path = tmp_path_factory.mktemp("data") / "dataset"
    datasets.DatasetDict({"test": test}).save_to_disk(str(path))
    return path


def test_decode_predictions_resumes_after_a_kill(tmp_path, monkeypatch):
    from evoxtral.evaluation.decoding import decode_predictions
    from evoxtral.model import inference

    calls = []

    def fake_transcribe(model, processor, audios, **kwargs):
        calls.append(list(audios))
        if len(calls) == 2 and model == "flaky":
            raise KeyboardInterrupt  # killed during the second batch
        return [f"text of {audio}" for audio in audios]

    monkeypatch.setattr(inference, "transcribe", fake_transcribe)
    rows = [{"id": f"c{i}", "audio_id": f"c{i}", "reference": "r"} for i in range(5)]
    path = tmp_path / "predictions" / "m.jsonl"
    spec = ModelSpec("m", "model")
    with pytest.raises(KeyboardInterrupt):
        decode_predictions(
            spec, list("abcde"), rows, path, batch_size=2, max_new_tokens=4, load=lambda: ("flaky", None)
        )
    assert len(path.read_text().splitlines()) == 2
    with path.open("a") as torn:
        torn.write('{"id": "c2", "pred')  # a line cut short by the kill
    calls.clear()
    predictions = decode_predictions(
        spec, list("abcde"), rows, path, batch_size=2, max_new_tokens=4, load=lambda: ("ok", None)
    )
    assert calls == [["c", "d"], ["e"]]  # only what was missing
    assert predictions == [f"text of {audio}" for audio in "abcde"]
    assert len(path.read_text().splitlines()) == 5
    # nothing left to decode: the model is not even loaded
    assert (
        decode_predictions(spec, list("abcde"), rows, path, batch_size=2, max_new_tokens=4, load=None) == predictions
    )
    other = [{**row, "reference": "changed"} for row in rows]
    with pytest.raises(ValueError, match="different run"):
        decode_predictions(spec, list("abcde"), other, path, batch_size=2, max_new_tokens=4, load=None)


@pytest.mark.slow
def test_eval_recipe_cli_on_the_tiny_model(tiny_model_dir, tiny_dataset, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    output_dir = tmp_path / "eval"
    command = [
        sys.executable, "recipes/eval.py", "--config", "recipes/tiny/eval.yaml",
        "--dataset", str(tiny_dataset), "--output_dir", str(output_dir),
        "--models", "base=evoxtral-tiny", "sft=evoxtral-tiny+does/not/exist",
        "--max_new_tokens", "6", "--batch_size", "2", "--bootstrap", "10",
        "--report_to", "wandb",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root), "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    finished = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Skipping clip clip3" in finished.stdout
    assert "Skipping model sft" in finished.stdout
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert set(metrics) == {"base", "base" + MISMATCHED_SUFFIX, CHANCE_LABEL}
    assert metrics[CHANCE_LABEL]["corpus"]["num_samples"] == 4
    assert metrics["base"]["corpus"]["num_samples"] == 4 and "tag_f1_ci" in metrics["base"]["evoxtral"]
    lines = (output_dir / "predictions" / "base.other_audio.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == ["clip0", "clip1", "clip2", "clip4"]
    assert all(row["audio_id"] != row["id"] for row in rows)
    report = (output_dir / "report.md").read_text()
    assert "## Table 2: core metrics, protocol=corpus" in report and "## Control: own audio vs other audio" in report
    assert "Chance level" in report
    assert (output_dir / "per_tag_f1.png").read_bytes()[:4] == b"\x89PNG"
    assert list(output_dir.glob("wandb/offline-run-*"))


def test_chance_is_a_perfect_listener_under_the_control():
    from evoxtral.evaluation.run import chance_metrics

    references = ["[laughs] one two.", "[sighs] three four.", "[laughs] five six."]
    order = [2, 0, 1]  # clip 0 hears clip 2's audio, and so on
    scored = chance_metrics(references, order, ["corpus"], min_support=1)["corpus"]
    # clip 0 gets "[laughs]" right from clip 2; clips 1 and 2 get the other tag: 1 of 3 tags matches
    assert scored["tag_f1"] == pytest.approx(1 / 3)
    assert chance_metrics(references, [0, 1, 2], ["corpus"], min_support=1)["corpus"]["tag_f1"] == 1.0
