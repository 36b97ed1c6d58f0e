"""The evaluation's chart: per-tag F1 bars, one colour per model, the control hatched."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evoxtral.evaluation.decoding import MISMATCHED_SUFFIX
from evoxtral.evaluation.report import per_tag_rows


def plot_per_tag_f1(
    results: dict[str, dict[str, dict]], protocol: str, path: Path, guides: dict[str, float] | None = None
) -> Path:
    """Grouped horizontal bars of per-tag F1, one colour per model, tags ordered by support.

    guides: {legend label: F1} drawn as dashed vertical lines (e.g. the targets a run is judged against).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, tags, support = per_tag_rows(results, protocol)
    height = 0.8 / max(len(labels), 1)
    figure, axes = plt.subplots(figsize=(9, 1.5 + 0.3 * max(len(tags), 1) * max(len(labels), 1) ** 0.5))
    positions = np.arange(len(tags))
    for offset, label in enumerate(labels):
        f1s = [results[label][protocol]["per_tag"].get(tag, {}).get("f1", 0.0) for tag in tags]
        hatch = "//" if label.endswith(MISMATCHED_SUFFIX) else None
        axes.barh(positions + offset * height, f1s, height=height, label=label, hatch=hatch)
    for (label, value), style in zip((guides or {}).items(), ("--", ":", "-.")):
        axes.axvline(value, color="black", linestyle=style, linewidth=1, label=label)
    axes.set_yticks(positions + height * (len(labels) - 1) / 2)
    axes.set_yticklabels([f"[{tag}] ({support[tag]})" for tag in tags])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(f"Per-tag F1 ({protocol} protocol; support in parentheses)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
