"""The `evaluate` modules in metrics/ load from their folders offline and return what the core computes."""

from pathlib import Path

import evaluate
import pytest

from evoxtral.scoring.evoxtral_bench import compute_metrics

METRICS = Path(__file__).resolve().parents[1] / "metrics"
PREDICTIONS = ["[laughing] That was the BEST day ever!", "[sighs] fine", "ok then", "[pause]"]
REFERENCES = ["[laughs] That was the BEST day ever!", "fine", "[gasps] ok then", ""]


@pytest.fixture(scope="module", autouse=True)
def module_cache(tmp_path_factory):
    # evaluate copies module files into its cache (under HF_HOME); keep this run's copies out of the user's.
    patch = pytest.MonkeyPatch()
    patch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path_factory.mktemp("hf_modules"))
    yield
    patch.undo()


@pytest.mark.parametrize("protocol", ["corpus", "evoxtral"])
def test_evoxtral_bench_round_trip(protocol):
    metric = evaluate.load(str(METRICS / "evoxtral_bench"))
    options = {"protocol": protocol, "bootstrap": 20, "seed": 3}
    result = metric.compute(predictions=PREDICTIONS, references=REFERENCES, **options)
    assert result == compute_metrics(PREDICTIONS, REFERENCES, **options)
    assert result["protocol"] == protocol and result["num_samples"] == 4
    # the alias counts under the corpus protocol only
    assert result["per_tag"]["laughs"]["f1"] == (1.0 if protocol == "corpus" else 0.0)


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("tag_f1", {"tag_f1", "tag_precision", "tag_recall", "tag_macro_f1"}),
        ("emphasis_f1", {"emphasis_f1", "emphasis_precision", "emphasis_recall"}),
        ("transcript_wer", {"wer", "cer", "num_wer_samples"}),
    ],
)
def test_single_purpose_modules_share_the_core(name, keys):
    result = evaluate.load(str(METRICS / name)).compute(predictions=PREDICTIONS, references=REFERENCES, collar=1)
    full = compute_metrics(PREDICTIONS, REFERENCES, collar=1)
    assert set(result) == keys
    assert result == {key: full[key] for key in keys}
    with_intervals = evaluate.load(str(METRICS / name)).compute(
        predictions=PREDICTIONS, references=REFERENCES, bootstrap=10
    )
    assert {f"{key}_ci" for key in keys if key != "num_wer_samples"} <= set(with_intervals)


def test_module_reports_bad_options():
    metric = evaluate.load(str(METRICS / "evoxtral_bench"))
    with pytest.raises(ValueError, match="collar"):
        metric.compute(predictions=["a"], references=["a"], protocol="evoxtral", collar=2)
