"""The ElevenLabs backend through the real SDK against the local stand-in: faults, no double payment, kill-and-resume."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import yaml

from evoxtral.configs import DataGenArguments
from evoxtral.data.generation import pipeline
from evoxtral.data.generation.backends import SynthesisError
from evoxtral.data.generation.espeak import EspeakBackend
from evoxtral.data.generation.standin import FaultPlan, create_app, serve_in_thread

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make system-deps)")
REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-not-a-real-key-5f2c"
TAGS = ["sighs", "laughs", "whispers", "pause", "sad", "shouts"]


@pytest.fixture(scope="module")
def espeak(tmp_path_factory):
    return EspeakBackend(sounds_dir=tmp_path_factory.mktemp("sounds"))


def _args(tmp_path, url, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "run"), num_clips=12, tags=TAGS, min_support=1, seed=1, backend="elevenlabs",
        split_ratios={"train": 0.5, "validation": 0.25, "test": 0.25},
        elevenlabs_base_url=url, voices=["voice-a", "voice-b"], concurrency=3, retry_base_delay_s=0.01,
        request_timeout_s=1.0, max_attempts=6,
    )  # fmt: skip
    return DataGenArguments(**{**settings, **overrides})


def test_sdk_path_survives_injected_faults_and_never_pays_twice(tmp_path, espeak, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    faults = ["429", "500", "503", "slow", "empty", "corrupt", "silent"]
    app = create_app(espeak, FaultPlan(queue=faults, slow_s=6.0))
    stats = app.state.stats
    with serve_in_thread(app) as url:
        # a timeout well above a normal answer on a busy machine, well below the injected slow one
        args = _args(tmp_path, url, dry_run=True, request_timeout_s=3.0, max_attempts=10)
        summary = pipeline.run(args)
        assert sum(summary.clips.values()) == 12 and not summary.failures, summary.failures
        assert stats.requests == 12 + len(faults) and sum(stats.faults.values()) == len(faults)
        assert len(stats.served_texts) == 12 and set(stats.served_texts.values()) == {1}
        rerun = pipeline.run(args)
        assert rerun.synthesized == 0 and rerun.reused == 12 and stats.requests == 12 + len(faults)
    dataset = datasets.load_from_disk(summary.dataset_path)
    rows = [row for split in dataset.values() for row in split.select_columns(["backend", "voice"])]
    assert {row["backend"] for row in rows} == {"elevenlabs"}
    assert {row["voice"] for row in rows} == {"voice-a", "voice-b"}
    for path in Path(args.output_dir).rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_permanent_errors_are_not_retried_and_a_rerun_fills_the_gap(tmp_path, espeak, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    app = create_app(espeak, FaultPlan(queue=["401"]))
    with serve_in_thread(app) as url:
        args = _args(tmp_path, url, concurrency=1, output_format="pcm_16000")
        summary = pipeline.run(args)
        assert list(summary.failures.values()) == ["HTTP 401: {'detail': 'injected 401'}"]
        assert app.state.stats.requests == 12 and sum(summary.clips.values()) == 11
        again = pipeline.run(args)
        assert sum(again.clips.values()) == 12 and again.synthesized == 1 and app.state.stats.requests == 13


def test_missing_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    with pytest.raises(SynthesisError, match="ELEVENLABS_API_KEY"):
        pipeline.run(_args(tmp_path, "http://127.0.0.1:9"))


def test_killed_cli_run_resumes_without_loss_or_duplicates(tmp_path, espeak):
    app = create_app(espeak, FaultPlan(latency_s=0.25))
    stats = app.state.stats
    with serve_in_thread(app) as url:
        config = _args(tmp_path, url, num_clips=24, concurrency=2)
        config_path = tmp_path / "config.yaml"
        fields = ("output_dir", "num_clips", "tags", "seed", "backend", "elevenlabs_base_url", "voices", "concurrency")
        fields += ("split_ratios",)
        config_path.write_text(yaml.safe_dump({name: getattr(config, name) for name in fields}))
        env = {**os.environ, "PYTHONPATH": str(REPO), "ELEVENLABS_API_KEY": KEY}
        command = [sys.executable, str(REPO / "data_gen" / "generate.py"), "--config", str(config_path)]
        store = Path(config.output_dir) / "clips"
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list(store.glob("??/*.json"))) < 6:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
        process.kill()
        process.wait()
        done_before_kill = {json.loads(p.read_text())["text"] for p in store.glob("??/*.json")}
        assert 6 <= len(done_before_kill) < 24 and not (Path(config.output_dir) / "dataset").exists()

        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert "24 clips" in finished.stdout
    plan = [json.loads(line) for line in (Path(config.output_dir) / "scripts.jsonl").read_text().splitlines()]
    dataset = datasets.load_from_disk(str(Path(config.output_dir) / "dataset"))
    ids = [row_id for split in dataset.values() for row_id in split["id"]]
    assert sorted(ids) == sorted(script["id"] for script in plan)  # nothing lost, nothing twice
    assert len(list(store.glob("??/*.wav"))) == 24 and not list(store.glob("??/*.tmp"))
    # clips finished before the kill were never requested again
    assert all(stats.served_texts[text] == 1 for text in done_before_kill)
    assert sum(stats.served_texts.values()) <= 24 + config.concurrency  # at most the clips in flight, redone
