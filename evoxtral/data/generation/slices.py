"""What a script plan is made of: the splits, the domains, the density slices (how many tags a script carries), the
named tag sets, and which tags scope over the words after them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evoxtral.data.generation.templates import DOMAIN_SENTENCES
from evoxtral.scoring import tags as vocab

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_RATIOS = dict(zip(SPLITS, (0.8, 0.1, 0.1)))
DOMAINS = tuple(DOMAIN_SENTENCES)


@dataclass(frozen=True)
class DensitySlice:
    name: str
    min_tags: int
    max_tags: int
    edge: bool = False  # back-to-back tags and tags on the clip's first/last word boundary


SLICES: dict[str, DensitySlice] = {
    s.name: s
    for s in [
        DensitySlice("plain", 0, 0),
        DensitySlice("light", 1, 2),
        DensitySlice("moderate", 3, 4),
        DensitySlice("dense", 5, 8),
        DensitySlice("edge", 2, 6, edge=True),
    ]
}
# The original dataset's proportions.
DEFAULT_SLICE_FRACTIONS = {"plain": 0.25, "light": 0.25, "moderate": 0.25, "dense": 0.15, "edge": 0.10}

# Tags that colour the speech after them (until the sentence ends or another such tag starts); the other
# categories are events at one point in time (a laugh, a pause, applause).
SCOPED_CATEGORIES = (vocab.EMOTION, vocab.DELIVERY)

# The 15 tags the original data generator was asked for (its results add confused and scared, which leaked in).
INTENDED_ORIGINAL_TAGS = tuple(name for name in vocab.ORIGINAL_TAGS if name not in ("confused", "scared"))

TAG_SETS = {
    "original": INTENDED_ORIGINAL_TAGS,
    "original_reported": vocab.ORIGINAL_TAGS,
    "all": tuple(vocab.VOCABULARY),
}


def is_scoped(tag_name: str) -> bool:
    return vocab.VOCABULARY[tag_name].category in SCOPED_CATEGORIES


def resolve_tag_set(spec: str | Sequence[str]) -> list[str]:
    """A named tag set ("original", "original_reported", "all") or a list of tags, resolved to canonical names."""
    if isinstance(spec, str):
        if spec not in TAG_SETS:
            raise ValueError(f"unknown tag set {spec!r}; use one of {sorted(TAG_SETS)} or a list of tags")
        return list(TAG_SETS[spec])
    resolved = []
    for raw in spec:
        tag = vocab.canonical_tag(raw)
        if not tag.known or tag.modifier:
            raise ValueError(f"{raw!r} is not a vocabulary tag (see evoxtral/scoring/tags.py)")
        if tag.name not in resolved:
            resolved.append(tag.name)
    return resolved


def slice_for_tag_count(count: int) -> str:
    """The density slice a script with this many tags belongs to when nobody said (edge is never inferred; more
    tags than any slice's range: dense)."""
    for density in SLICES.values():
        if not density.edge and density.min_tags <= count <= density.max_tags:
            return density.name
    return "dense"


def tag_set_for(tags: Sequence[str]) -> list[str]:
    """The tag set a run's ``tags`` setting names: one named set (``["original"]``) or a list of vocabulary tags."""
    named = len(tags) == 1 and tags[0] in TAG_SETS
    return resolve_tag_set(tags[0] if named else tags)
