"""Speaker embeddings of one recording -> a speaker label per window, with the number of speakers given or
estimated.

Agglomerative clustering on cosine distance with average linkage (scikit-learn). The count, when not given, is
decided in two steps: the embedder's own test says whether the two top-level groups are two voices at all
(silhouette scores cannot say "one"); if they are, the k in 2..max_speakers with the best silhouette score wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # one int per window, 0..n_speakers-1
    n_speakers: int
    split_score: float | None  # the embedder's two-voice score of the top-level split (None: not computed)


def cluster_speakers(
    vectors: np.ndarray,
    distinct_voices: Callable[[np.ndarray], tuple[bool, float]],
    num_speakers: int | None = None,
    max_speakers: int = 8,
) -> Clustering:
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    count = len(vectors)
    if count < 2 or num_speakers == 1:
        return Clustering(np.zeros(count, int), min(count, 1), None)

    def fit(k: int) -> np.ndarray:
        return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(vectors)

    if num_speakers is not None:
        k = min(num_speakers, count)
        return Clustering(fit(k), k, None)
    two_groups = fit(2)
    distinct, score = distinct_voices(two_groups)
    if not distinct:
        return Clustering(np.zeros(count, int), 1, score)
    candidates = range(2, min(max_speakers, count - 1) + 1)
    if len(candidates) < 2:  # silhouette needs more windows than clusters: two it is
        return Clustering(two_groups, 2, score)
    scored = [(silhouette_score(vectors, labels, metric="cosine"), k, labels) for k, labels in
              ((k, fit(k)) for k in candidates)]  # fmt: skip
    _, k, labels = max(scored, key=lambda item: item[0])
    return Clustering(labels, k, score)
