"""The eval recipe's pieces: model specs, the mismatched-audio derangement, the tables and the chart."""

import pytest

from evoxtral.bench import compute_metrics
from evoxtral.evaluation import (
    MISMATCHED_SUFFIX,
    ModelSpec,
    mismatched_audio_order,
    plot_per_tag_f1,
    render_core_table,
    render_per_tag_table,
    render_report,
)


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
    assert "| Tag F1 (micro) ↑ | 0.0% | **80.0%** | sft |" in corpus  # tp 2, fp 0, fn 1


def test_core_table_shows_intervals():
    results = {"base": {"corpus": compute_metrics(["a [sighs]"] * 3, ["a [sighs]"] * 3, bootstrap=20)}}
    assert "| Tag F1 (micro) ↑ | 100.0% [100.0, 100.0] | — |" in render_core_table(results, "corpus")


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
