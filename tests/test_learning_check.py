"""The learning check: target checks and results files on hand-made metrics, stage skipping and rebuilding with
stand-in commands, the YAMLs agreeing with the orchestrator's paths, and the tiny scale end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evoxtral.configs import SCALES, LearningCheckArguments, Targets
from evoxtral.evaluation.decoding import MISMATCHED_SUFFIX
from evoxtral.learning_check.report import (
    CONDITIONS,
    RESULTS_JSON,
    RESULTS_MD,
    RESULTS_PLOT,
    render_results,
    summarize_learning_check,
    write_results,
)
from evoxtral.learning_check.run import parse_learning_check_args, plan_stages, stage_paths
from evoxtral.scoring.evoxtral_bench import compute_metrics
from evoxtral.utils.stages import Stage, StageError, run_stages

ROOT = Path(__file__).resolve().parents[1]
OTHER = MISMATCHED_SUFFIX

# 20 clips of 10 words: [whispers] on every clip, [pause] on every other one (support 20 and 10)
WORDS = "apple river candle mirror window garden pencil rocket button ladder".split()
REFERENCES = [
    f"[whispers] {' '.join(WORDS[:5])}. {'[pause] ' if i % 2 == 0 else ''}{' '.join(WORDS[5:])}." for i in range(20)
]


def _without_pause(text: str) -> str:
    return text.replace("[pause] ", "")


def _metrics(predictions_by_label: dict[str, list[str]]) -> dict:
    return {
        label: {"corpus": compute_metrics(predictions, REFERENCES, protocol="corpus")}
        for label, predictions in predictions_by_label.items()
    }


def _listening_run() -> dict:
    """SFT misses one [pause] in ten; RAFT is perfect; from other clips' audio neither writes a tag."""
    sft = [_without_pause(text) if i == 0 else text for i, text in enumerate(REFERENCES)]
    untagged = [" ".join(reversed(WORDS)) for _ in REFERENCES]
    return _metrics({"sft": sft, "sft" + OTHER: untagged, "raft": list(REFERENCES), "raft" + OTHER: untagged})


def _cells(summary: dict, check_id: str) -> dict:
    return next(check for check in summary["checks"] if check["id"] == check_id)["cells"]


def test_a_listening_run_passes_every_check():
    summary = summarize_learning_check(_listening_run())
    assert summary["passed"] and summary["failed"] == []
    assert summary["tags"] == ["whispers", "pause"] and summary["num_clips"] == 20
    assert summary["per_tag"]["pause"]["support"] == 10
    # SFT: 9 of 10 pauses, none invented -> F1 = 2 * 0.9 / 1.9
    assert summary["per_tag"]["pause"]["sft"] == pytest.approx(18 / 19)
    assert summary["per_tag"]["pause"]["raft"] == 1.0 and summary["per_tag"]["whispers"]["sft_other_audio"] == 0.0
    assert _cells(summary, "own_every_tag_f1")["sft"]["tag"] == "pause"
    better = _cells(summary, "raft_better_on_weakest")["raft"]
    assert better["tag"] == "pause" and better["value"] == pytest.approx(1 - 18 / 19)
    assert summary["overall"]["raft"]["wer"] == 0.0 and summary["overall"]["sft_other_audio"]["wer"] == 1.0


def test_each_missed_target_is_named():
    sft = [_without_pause(text) if i == 0 else text for i, text in enumerate(REFERENCES)]
    raft = [_without_pause(text) for text in REFERENCES]  # loses every pause: worse than SFT, weakest not better
    raft[0] = raft[0].replace("apple river", "apricot rover")  # 2 word errors in 200: WER 1%
    prior = ["[whispers] " + " ".join(WORDS) for _ in REFERENCES]  # tags guessed without listening
    metrics = _metrics({"sft": sft, "sft" + OTHER: prior, "raft": raft, "raft" + OTHER: prior})
    summary = summarize_learning_check(metrics)
    assert not summary["passed"]
    assert summary["failed"] == [
        "own_tag_f1",
        "own_every_tag_f1",
        "other_tag_f1",
        "raft_not_worse",
        "raft_better_on_weakest",
    ]
    assert _cells(summary, "own_wer")["raft"] == {"value": 0.01, "passed": True, "shown": "1.00%"}
    assert _cells(summary, "raft_not_worse")["raft"]["tag"] == "pause"
    assert _cells(summary, "own_tag_f1")["sft"]["passed"]  # SFT's column is shown, not judged


def _condition(wer: float, tag_f1: float, per_tag: dict[str, float]) -> dict:
    return {
        "corpus": {
            "wer": wer,
            "cer": wer,
            "tag_f1": tag_f1,
            "tag_precision": tag_f1,
            "tag_recall": tag_f1,
            "num_samples": 300,
            "per_tag": {tag: {"f1": f1, "precision": f1, "recall": f1, "support": 60} for tag, f1 in per_tag.items()},
        }
    }


def _hand_made(raft_wer=0.05, raft_f1=0.95, raft_tags=(1.0, 0.85), sft_tags=(1.0, 0.85), other_f1=0.30) -> dict:
    other = _condition(1.2, other_f1, {"sad": other_f1, "pause": other_f1})
    return {
        "sft": _condition(0.06, 0.9, dict(zip(("sad", "pause"), sft_tags))),
        "sft" + OTHER: other,
        "raft": _condition(raft_wer, raft_f1, dict(zip(("sad", "pause"), raft_tags))),
        "raft" + OTHER: other,
    }


def test_targets_are_inclusive_bounds():
    # every value exactly on its bound passes, except the weakest tag, which must rise above SFT's
    at_bounds = summarize_learning_check(_hand_made(sft_tags=(1.0, 0.84)))
    assert at_bounds["passed"], at_bounds["failed"]
    assert summarize_learning_check(_hand_made(raft_wer=0.0501))["failed"] == ["own_wer", "raft_better_on_weakest"]
    assert summarize_learning_check(_hand_made(raft_f1=0.949))["failed"] == ["own_tag_f1", "raft_better_on_weakest"]
    assert summarize_learning_check(_hand_made(other_f1=0.31))["failed"] == ["other_tag_f1", "raft_better_on_weakest"]
    stricter = Targets(own_wer_max=0.01)
    assert "own_wer" in summarize_learning_check(_hand_made(sft_tags=(1.0, 0.84)), targets=stricter)["failed"]


def test_a_perfect_weakest_tag_cannot_improve_and_passes():
    summary = summarize_learning_check(_hand_made(raft_tags=(1.0, 1.0), sft_tags=(1.0, 1.0)))
    assert summary["passed"]
    assert _cells(summary, "raft_better_on_weakest")["raft"]["value"] == 0.0


def test_metrics_without_the_control_are_refused():
    metrics = _hand_made()
    del metrics["raft" + OTHER]
    with pytest.raises(ValueError, match="mismatched_audio_control"):
        summarize_learning_check(metrics)
    with pytest.raises(ValueError, match="protocol 'evoxtral'"):
        summarize_learning_check(_hand_made(), protocol="evoxtral")


def test_results_files(tmp_path):
    metrics = _listening_run()
    details = {"scale": "full", "targets_expected": True, "dataset": "d", "split": "test", "model_parameters": "1M",
               "stages": {"sft": {"command": "accelerate launch recipes/sft.py", "seconds": 420.0}}}  # fmt: skip
    summary = write_results(tmp_path, metrics, details)
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert saved["passed"] and saved["targets"] == {
        "own_wer_max": 0.05,
        "own_tag_f1_min": 0.95,
        "own_every_tag_f1_min": 0.85,
        "other_tag_f1_max": 0.3,
        "judge_raft_vs_sft": True,
    }
    for key, label in CONDITIONS.items():
        assert saved["overall"][key]["tag_f1"] == metrics[label]["corpus"]["tag_f1"]
        for tag in ("whispers", "pause"):
            assert saved["per_tag"][tag][key] == metrics[label]["corpus"]["per_tag"][tag]["f1"]
    assert (tmp_path / RESULTS_PLOT).read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / RESULTS_MD).read_text()
    assert text.startswith("# Learning check (full scale)") and "Smoke scale" not in text
    assert "| `[pause]` | 10 | 0.947 | 0.000 | 1.000 | 0.000 | +0.053 |" in text
    assert "| RAFT vs SFT: SFT's weakest tag | higher | — | `[pause]` 0.947 → 1.000 ✓ |" in text
    assert "**Verdict: PASS**." in text and "| sft | 7 min 00 s | `accelerate launch recipes/sft.py` |" in text
    smoke = render_results(summary, {**details, "scale": "tiny", "targets_expected": False})
    assert "> **Smoke scale.**" in smoke and "**Verdict: PASS**. Smoke scale: not expected to pass." in smoke


def test_failing_verdict_lists_the_missed_checks():
    summary = summarize_learning_check(_hand_made(raft_wer=0.2))
    text = render_results(summary, {"targets_expected": True})
    assert "**Verdict: FAIL**: 2 of 6 checks missed (Own audio: WER; RAFT vs SFT: SFT's weakest tag).\n" in text
    assert "| Own audio: WER | ≤ 5.0% | 6.00% ✗ | 20.00% ✗ |" in text


# --- Configs and stages --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [scale for scale in SCALES if scale != "cpu"])
def test_stage_yamls_agree_with_the_orchestrator_paths(scale, monkeypatch):
    """Each stage YAML run by hand writes and reads where the orchestrator puts things (the cpu scale runs the
    demo's own recipes, which write where make demo puts things: see the next test)."""
    monkeypatch.chdir(ROOT)
    args = parse_learning_check_args(["--scale", scale])
    assert args.scale == scale and args.targets == Targets()
    paths = stage_paths(args, ROOT)
    assert paths["data"] == Path(yaml.safe_load(Path(args.data_config).read_text())["output_dir"])
    sft, raft, evaluation = (yaml.safe_load(Path(path).read_text()) for path in (args.sft_config, args.raft_config,
                                                                                  args.eval_config))  # fmt: skip
    assert Path(sft["model_name_or_path"]) == paths["model"] and Path(sft["output_dir"]) == paths["sft"]
    assert Path(sft["dataset_name"]) == paths["dataset"] == Path(raft["dataset_name"]) == Path(evaluation["dataset"])
    assert sft["random_init"] and not sft["use_peft"] and not sft["freeze_audio_encoder"]
    assert Path(raft["model_name_or_path"]) == paths["sft"] and raft["adapter"] is None and raft["rounds"] == 1
    assert Path(raft["output_dir"]) == paths["raft"] and Path(evaluation["output_dir"]) == paths["eval"]
    assert evaluation["models"] == [f"sft={paths['sft']}", f"raft={paths['raft']}"]
    assert evaluation["mismatched_audio_control"] and evaluation["split"] == "test"
    assert args.targets_expected == (scale == "full")


def test_the_cpu_scale_is_the_demo_judged_by_its_own_targets(monkeypatch):
    monkeypatch.chdir(ROOT)
    args = parse_learning_check_args(["--scale", "cpu"])
    assert (args.sft_config, args.raft_config, args.eval_config) == (
        "recipes/demo/sft.yaml", "recipes/demo/raft.yaml", "recipes/demo/eval.yaml",
    )  # fmt: skip
    assert args.data_config == "data_gen/configs/demo.yaml" and args.model_preset == "tiny-whisper"
    assert args.targets_expected and args.targets == Targets(
        own_wer_max=2.0, own_tag_f1_min=0.80, own_every_tag_f1_min=0.60, other_tag_f1_max=0.45, judge_raft_vs_sft=False
    )
    stages = {stage.name: stage for stage in plan_stages(args, ROOT, python="py")}
    out = Path("outputs/learning_check/cpu")
    for name, flags in {
        "sft": ["--model_name_or_path", str(out / "model"), "--output_dir", str(out / "sft")],
        "raft": ["--model_name_or_path", str(out / "sft"), "--output_dir", str(out / "raft")],
        "eval": ["--models", f"sft={out / 'sft'}", "--output_dir", str(out / "eval")],
    }.items():  # the orchestrator's paths override the demo's, so the two runs never share a folder
        command = stages[name].command
        assert all(command[command.index(flag) + 1] == value for flag, value in zip(flags[::2], flags[1::2]))
    assert "--preset tiny-whisper" in stages["model"].shown


def test_stage_commands_are_the_user_commands(monkeypatch):
    monkeypatch.chdir(ROOT)
    args = parse_learning_check_args(["--scale", "full", "--output_dir", "/tmp/lc"])
    stages = {stage.name: stage for stage in plan_stages(args, ROOT, python="py")}
    assert list(stages) == ["data", "model", "sft", "raft", "eval"]
    assert stages["model"].shown == (
        "python -m evoxtral.model.tiny --output-dir /tmp/lc/model --preset small --vocab-size 8192 --seed 0"
    )
    assert (ROOT / args.accelerate_config).is_file()
    assert stages["sft"].shown.startswith(
        "accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/sft.py --config "
    )
    assert stages["sft"].command[:4] == ["py", "-m", "accelerate.commands.launch", "--config_file"]
    tiny = {stage.name: stage for stage in plan_stages(parse_learning_check_args(["--num_processes", "2"]), ROOT)}
    threads = max(1, (os.cpu_count() or 1) // 2)  # the cores shared by the 2 processes, as in make demo
    assert tiny["raft"].shown.startswith(
        f"accelerate launch --num_processes 2 --num_cpu_threads_per_process {threads} recipes/raft.py --config "
    )
    assert "--model_name_or_path /tmp/lc/sft" in stages["raft"].shown
    assert stages["eval"].shown.endswith(
        "--models sft=/tmp/lc/sft raft=/tmp/lc/raft --mismatched_audio_control true --output_dir /tmp/lc/eval"
    )
    assert stages["data"].output_dir == ROOT / "outputs/data/learning_check"
    with pytest.raises(ValueError, match="scale must be one of"):
        LearningCheckArguments(scale="huge")


def _writer(folder: Path, name: str, fail: bool = False) -> Stage:
    """A stand-in stage: prints, then writes its done file (or exits 3 without it)."""
    code = f"print('working on {name}'); " + (
        "raise SystemExit(3)"
        if fail
        else f"import pathlib; p = pathlib.Path({str(folder)!r}); "
        "p.mkdir(parents=True, exist_ok=True); (p / 'done').write_text('ok')"
    )
    return Stage(name, [sys.executable, "-c", code], f"make {name}", folder, ("done",), ())


def test_stages_skip_finished_work_and_rebuild_what_depends_on_a_rebuilt_stage(tmp_path, capsys):
    first, second = _writer(tmp_path / "a", "a"), _writer(tmp_path / "b", "b")
    second = Stage(**{**second.__dict__, "depends_on": ("a",)})
    records_path = tmp_path / "stages.json"
    records = run_stages([first, second], tmp_path, tmp_path / "logs", records_path)
    assert set(records) == {"a", "b"} and all(record["seconds"] is not None for record in records.values())
    assert "working on a" in (tmp_path / "logs" / "a.log").read_text()

    (tmp_path / "b" / "keep.txt").write_text("from this run")
    run_stages([first, second], tmp_path, tmp_path / "logs", records_path)
    assert "a: done already" in capsys.readouterr().out and (tmp_path / "b" / "keep.txt").exists()

    (tmp_path / "a" / "done").unlink()  # a is redone, so b's old output must go
    run_stages([first, second], tmp_path, tmp_path / "logs", records_path)
    out = capsys.readouterr().out
    assert "a rebuilt in this run" in out and not (tmp_path / "b" / "keep.txt").exists()
    assert (tmp_path / "b" / "done").exists()
    assert json.loads(records_path.read_text())["b"]["command"] == "make b"


def test_a_failing_stage_stops_the_run_with_its_log(tmp_path):
    failing = _writer(tmp_path / "a", "a", fail=True)
    later = _writer(tmp_path / "b", "b")
    with pytest.raises(StageError) as error:
        run_stages([failing, later], tmp_path, tmp_path / "logs", tmp_path / "stages.json")
    message = str(error.value)
    assert "stage 'a' exited with code 3" in message and "working on a" in message and "make a" in message
    assert not (tmp_path / "b").exists() and not (tmp_path / "stages.json").exists()


# --- The tiny scale, end to end ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_scale_end_to_end(tmp_path, evoxtral_cache):
    """data -> model -> SFT -> RAFT -> eval through the real commands; the results agree with eval's metrics.json,
    and a second run skips every stage and writes the same results."""
    output_dir, data_dir = tmp_path / "learning_check", tmp_path / "data"
    command = [
        sys.executable, "recipes/learning_check.py", "--scale", "tiny",
        "--output_dir", str(output_dir), "--data_dir", str(data_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf")}
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout[-4000:]
    assert "Learning check (tiny) finished" in finished.stdout

    metrics = json.loads((output_dir / "eval" / "metrics.json").read_text())
    results = json.loads((output_dir / RESULTS_JSON).read_text())
    test_clips = json.loads((data_dir / "summary.json").read_text())["clips"]["test"]
    assert results["num_clips"] == test_clips == metrics["sft"]["corpus"]["num_samples"]
    tags_in_references = {tag for tag, row in metrics["sft"]["corpus"]["per_tag"].items() if row["support"] > 0}
    assert set(results["tags"]) == tags_in_references and len(tags_in_references) == 7
    for key, label in CONDITIONS.items():
        for name in ("wer", "tag_f1"):
            assert results["overall"][key][name] == metrics[label]["corpus"][name]
        for tag in results["tags"]:
            expected = metrics[label]["corpus"]["per_tag"].get(tag, {}).get("f1", 0.0)
            assert results["per_tag"][tag][key] == expected
    assert [check["id"] for check in results["checks"]] == [
        "own_wer", "own_tag_f1", "own_every_tag_f1", "other_tag_f1", "raft_not_worse", "raft_better_on_weakest"
    ]  # fmt: skip
    assert results["passed"] == (results["failed"] == []) and results["details"]["targets_expected"] is False
    assert set(results["details"]["stages"]) == {"data", "model", "sft", "raft", "eval"}
    assert all(record["seconds"] > 0 for record in results["details"]["stages"].values())

    # full fine-tunes, not adapters, and the control decoded other clips' audio
    for stage in ("sft", "raft"):
        assert (output_dir / stage / "config.json").is_file()
        assert not (output_dir / stage / "adapter_config.json").exists()
    control = [json.loads(line) for line in (output_dir / "eval/predictions/raft.other_audio.jsonl").open()]
    assert len(control) == test_clips and all(row["audio_id"] != row["id"] for row in control)
    text = (output_dir / RESULTS_MD).read_text()
    assert "> **Smoke scale.**" in text and all(f"| `[{tag}]` |" in text for tag in results["tags"])
    assert (output_dir / RESULTS_PLOT).read_bytes()[:4] == b"\x89PNG"

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.stdout.count("done already") == 5
    assert json.loads((output_dir / RESULTS_JSON).read_text()) == results
