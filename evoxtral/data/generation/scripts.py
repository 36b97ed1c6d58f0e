"""Tagged scripts: density slices, domains, tag balance, one validation rule for every script source.

A script is the text a speech backend reads, with ElevenLabs v3 audio tags inline. Scripts come from three
sources that all end in ``validate_script``: the offline template composer (default), an LLM behind any
OpenAI-compatible endpoint (``evoxtral.data.generation.llm``), or a JSON/JSONL file of records with ``tagged_text``.

Balance is planned before any text exists: the clips of each split get their density slice and domain first,
then each split's tag slots are dealt so that every tag of the configured set reaches ``min_support`` in that
split and the rest is spread evenly. Only then are words written around the tags.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evoxtral.data.generation.composers import Composer, ComposeRequest, compose_from_templates
from evoxtral.data.generation.slices import (
    DEFAULT_SLICE_FRACTIONS,
    DEFAULT_SPLIT_RATIOS,
    DOMAINS,
    SLICES,
    is_scoped,
    resolve_tag_set,
    slice_for_tag_count,
)
from evoxtral.scoring import tags as vocab


@dataclass
class Script:
    id: str
    tagged_text: str
    slice: str
    domain: str
    split: str
    source: str  # "template", "llm" or "file"

    @property
    def tags(self) -> list[str]:
        return vocab.tag_names(self.tagged_text)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class ScriptIssue:
    """One thing wrong with (or worth telling about) a script: a fixed ``reason`` the summary counts, and the
    ``detail`` in words for this script."""

    reason: str
    detail: str


# The only reasons a user's script is rejected: input that cannot become a clip. Everything else about a user's
# script (its tag count, tags at either end, tags outside the configured set) is a warning and the script is kept.
EMPTY, BRACKETS, EMPTY_TAG, NO_WORDS = "empty script", "unbalanced brackets", "empty tag", "no words to speak"
# The warnings a kept file script can carry.
TRAILING_TAG = "tag with no speech after it"
OUTSIDE_SET = "tag outside the configured set"
UNKNOWN_TAG = "tag outside the vocabulary"


def malformed_issues(text: object) -> list[ScriptIssue]:
    """Why a script cannot become a clip at all: no text, broken brackets, an empty tag, no words to speak."""
    if not isinstance(text, str) or not text.strip():
        return [ScriptIssue(EMPTY, "empty script")]
    issues = [
        ScriptIssue(EMPTY_TAG if error.startswith("empty tag") else BRACKETS, error)
        for error in vocab.bracket_errors(text)
    ]
    if not vocab.strip_tags(text).strip():
        issues.append(ScriptIssue(NO_WORDS, "no words to speak"))
    return issues


def _trailing_scoped_tag(text: str, spans: Sequence[vocab.TagSpan]) -> vocab.TagSpan | None:
    last = spans[-1] if spans else None
    if last is not None and last.known and is_scoped(last.name) and not text[last.end :].strip():
        return last
    return None


def script_warnings(text: str, allowed_tags: Sequence[str] | None = None) -> list[ScriptIssue]:
    """What a kept script does that a generated one never would: a scoped tag (emotion, delivery) at the very end
    with no speech to colour (kept as written), tags outside ``allowed_tags``, tags outside the vocabulary (both kept
    under their normalised names)."""
    spans = vocab.extract_tags(text)
    issues = []
    trailing = _trailing_scoped_tag(text, spans)
    if trailing is not None:
        issues.append(ScriptIssue(TRAILING_TAG, f"[{trailing.raw}] ends the script: kept, with no speech to colour"))
    unknown = sorted({span.name for span in spans if not span.known})
    if unknown:
        issues.append(ScriptIssue(UNKNOWN_TAG, "not vocabulary tags, kept: " + ", ".join(unknown)))
    if allowed_tags is not None:
        outside = sorted({span.name for span in spans if span.known} - set(allowed_tags))
        if outside:
            issues.append(ScriptIssue(OUTSIDE_SET, "outside the configured tags, kept: " + ", ".join(outside)))
    return issues


def validate_script(
    text: str,
    *,
    allowed_tags: Sequence[str] | None = None,
    expected_tags: Sequence[str] | None = None,
    slice_name: str | None = None,
) -> list[str]:
    """Every problem with a generated script, in words; an empty list means the script is usable.

    The strict check the generator's own scripts (templates, random words, an LLM's answers) go through: the
    malformed cases of ``malformed_issues``, unknown tags, tags outside the configured set, a tag multiset other
    than the one asked for, a tag count outside the slice's range, and a scoped tag (emotion, delivery) with no
    speech after it to colour. A user's file is held to ``malformed_issues`` only (see ``load_scripts_file``).
    """
    malformed = malformed_issues(text)
    if malformed and malformed[0].reason == EMPTY:
        return ["empty script"]
    problems = [issue.detail for issue in malformed if issue.reason != NO_WORDS]
    spans = vocab.extract_tags(text)
    unknown = [span.raw for span in spans if not span.known]
    if unknown:
        problems.append("unknown tags: " + ", ".join(f"[{raw}]" for raw in unknown))
    names = [span.name for span in spans if span.known]
    if allowed_tags is not None:
        outside = sorted(set(names) - set(allowed_tags))
        if outside:
            problems.append("tags outside the configured set: " + ", ".join(outside))
    if expected_tags is not None and Counter(names) != Counter(expected_tags):
        problems.append(
            f"expected tags {sorted(expected_tags)} ({len(expected_tags)}), got {sorted(names)} ({len(names)})"
        )
    if slice_name is not None:
        density = SLICES.get(slice_name)
        if density is None:
            problems.append(f"unknown slice {slice_name!r}")
        elif not density.min_tags <= len(spans) <= density.max_tags:
            problems.append(
                f"slice {slice_name!r} takes {density.min_tags}-{density.max_tags} tags, found {len(spans)}"
            )
    if any(issue.reason == NO_WORDS for issue in malformed):
        problems.append("no words to speak")
    elif (trailing := _trailing_scoped_tag(text, spans)) is not None:
        problems.append(f"[{trailing.raw}] ends the script: there is no speech for it to colour")
    return problems


def apportion(total: int, fractions: dict[str, float]) -> dict[str, int]:
    """Split ``total`` into integer parts proportional to ``fractions`` (largest remainder, ties by key order)."""
    weight = sum(fractions.values())
    if total < 0 or weight <= 0 or any(value < 0 for value in fractions.values()):
        raise ValueError(f"cannot apportion {total} over {fractions}")
    exact = {key: total * value / weight for key, value in fractions.items()}
    parts = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(fractions, key=lambda key: (-(exact[key] - parts[key]), list(fractions).index(key)))
    for key in by_remainder[: total - sum(parts.values())]:
        parts[key] += 1
    return parts


def stratified_split(strata: Sequence[str], ratios: dict[str, float], seed: int) -> list[str]:
    """A split name for each item, seeded, with split sizes from ``apportion`` and each stratum spread in proportion.

    Items are shuffled within their stratum and laid out stratum after stratum; walking that order, each item goes
    to the split furthest behind its target share, so every stratum is cut in the same proportions.
    """
    rng = random.Random(seed)
    targets = apportion(len(strata), ratios)
    order = []
    for stratum in sorted(set(strata)):
        members = [index for index, name in enumerate(strata) if name == stratum]
        rng.shuffle(members)
        order.extend(members)
    assigned = dict.fromkeys(targets, 0)
    labels = [""] * len(strata)
    for position, index in enumerate(order, start=1):
        open_splits = [name for name in targets if assigned[name] < targets[name]]
        split = max(open_splits, key=lambda name: targets[name] * position / len(strata) - assigned[name])
        assigned[split] += 1
        labels[index] = split
    return labels


def plan_split_tags(
    slice_names: Sequence[str], tag_set: Sequence[str], min_support: int, rng: random.Random, split: str = ""
) -> list[list[str]]:
    """Deal the tags of one split's clips: each tag at least ``min_support`` times, the rest spread evenly.

    Tag counts are first drawn within each clip's slice range, then raised (never past the range) until the
    split can hold the required support. Tags within one clip are distinct whenever the set allows it.
    """
    densities = [SLICES[name] for name in slice_names]
    counts = [rng.randint(d.min_tags, d.max_tags) for d in densities]
    needed = min_support * len(tag_set)
    while sum(counts) < needed:
        growable = [i for i, d in enumerate(densities) if counts[i] < d.max_tags]
        if not growable:
            raise ValueError(
                f"the {split or 'a'} split has {len(slice_names)} clips holding at most {sum(counts)} tags, but "
                f"{len(tag_set)} tags x min_support {min_support} = {needed} are needed: raise num_clips, lower "
                "min_support or use fewer tags"
            )
        counts[rng.choice(growable)] += 1
    total = sum(counts)
    if not tag_set:
        if total:
            raise ValueError("slices with tags need a non-empty tag set")
        return [[] for _ in counts]
    quota = dict.fromkeys(tag_set, total // len(tag_set))
    for name in rng.sample(list(tag_set), total % len(tag_set)):
        quota[name] += 1
    dealt: list[list[str]] = [[] for _ in counts]
    # The clips that take the most tags go first, so the last clips are not left with repeats of one tag.
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i], rng.random())):
        for _ in range(counts[index]):
            candidates = [name for name in tag_set if quota[name] > 0 and name not in dealt[index]]
            candidates = candidates or [name for name in tag_set if quota[name] > 0]
            best = max(quota[name] for name in candidates)
            choice = rng.choice([name for name in candidates if quota[name] == best])
            quota[choice] -= 1
            dealt[index].append(choice)
        rng.shuffle(dealt[index])
    return dealt


@dataclass
class ScriptPlan:
    """The scripts of a run, and what went wrong on the way (reported in the summary, never fatal alone)."""

    scripts: list[Script] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    fallbacks: int = 0  # LLM scripts that failed validation every time and were written from templates instead
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (where, what): kept scripts worth a look
    rejected_reasons: dict[str, int] = field(default_factory=dict)  # reason -> records rejected for it
    warning_reasons: dict[str, int] = field(default_factory=dict)  # reason -> kept scripts warned about it


def generate_scripts(
    num_clips: int,
    tag_set: Sequence[str],
    *,
    seed: int = 0,
    slice_fractions: dict[str, float] | None = None,
    domains: Sequence[str] = DOMAINS,
    split_ratios: dict[str, float] | None = None,
    min_support: int = 1,
    composer: Composer = compose_from_templates,
    source: str = "template",
) -> ScriptPlan:
    """Seeded scripts over density slices and domains, each split holding every tag at least ``min_support`` times.

    ``composer`` writes the words around each planned tag list; whatever it returns goes through
    ``validate_script`` against the plan, and a composer that fails (an LLM, say) falls back to templates.
    """
    rng = random.Random(seed)
    fractions = slice_fractions or DEFAULT_SLICE_FRACTIONS
    unknown = set(fractions) - set(SLICES)
    if unknown:
        raise ValueError(f"unknown slices {sorted(unknown)}; slices are {list(SLICES)}")
    bad_domains = set(domains) - set(DOMAINS)
    if bad_domains or not domains:
        raise ValueError(f"unknown domains {sorted(bad_domains)}; domains are {list(DOMAINS)}")
    tag_set = resolve_tag_set(tag_set)
    slice_counts = apportion(num_clips, fractions)
    slice_names = [name for name, count in slice_counts.items() for _ in range(count)]
    domain_cycle = list(domains) * (num_clips // len(domains) + 1)
    rng.shuffle(slice_names)
    domain_names = domain_cycle[:num_clips]
    rng.shuffle(domain_names)
    splits = stratified_split(slice_names, split_ratios or DEFAULT_SPLIT_RATIOS, seed)
    planned_tags: list[list[str]] = [[] for _ in range(num_clips)]
    for split in dict.fromkeys(splits):
        members = [i for i, name in enumerate(splits) if name == split]
        dealt = plan_split_tags([slice_names[i] for i in members], tag_set, min_support, rng, split)
        for i, tag_list in zip(members, dealt):
            planned_tags[i] = tag_list
    plan = ScriptPlan()
    for index in range(num_clips):
        request = ComposeRequest(domain_names[index], planned_tags[index], slice_names[index])
        clip_rng = random.Random(f"{seed}-{index}")
        text, clip_source = composer(request, clip_rng), source
        problems = validate_script(text, allowed_tags=tag_set, expected_tags=request.tags, slice_name=request.slice)
        if problems and composer is not compose_from_templates:
            plan.rejected.append((f"{source} script {index}", "; ".join(problems)))
            plan.fallbacks += 1
            text, clip_source = compose_from_templates(request, clip_rng), "template"
            problems = validate_script(
                text, allowed_tags=tag_set, expected_tags=request.tags, slice_name=request.slice
            )
        if problems:  # a template bug, not bad luck: fail loudly rather than ship a skewed dataset
            raise AssertionError(f"composed script {index} is invalid ({'; '.join(problems)}): {text!r}")
        plan.scripts.append(Script(f"{index:06d}", text, request.slice, request.domain, splits[index], clip_source))
    return plan


def load_scripts_file(
    path: str | Path,
    *,
    seed: int = 0,
    split_ratios: dict[str, float] | None = None,
    tag_set: Sequence[str] | None = None,
) -> ScriptPlan:
    """Scripts from JSON (a list, or {"scripts": [...]}) or JSONL records with ``tagged_text``; every well-formed
    one is kept.

    Optional fields: ``id`` (default: the record's position), ``slice`` (a label kept as written; otherwise the
    slice of its tag count, any count), ``domain``. Only malformed records are rejected, each reported with its
    position and reason (``malformed_issues``, a line that is not JSON, a record without ``tagged_text``); a tag at
    the end with no speech to colour, and tags outside ``tag_set`` or the vocabulary, are kept as written and
    reported as warnings. Splits are stratified by slice.
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    plan = ScriptPlan()
    rejected_reasons: Counter = Counter()
    warning_reasons: Counter = Counter()
    records: list[tuple[str, int, object]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path.name}:{number}", len(records), json.loads(line)))
            except json.JSONDecodeError as error:
                plan.rejected.append((f"{path.name}:{number}", f"not JSON ({error.msg})"))
                rejected_reasons["not JSON"] += 1
    else:
        data = json.loads(raw)
        data = data.get("scripts", data) if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of records or {{'scripts': [...]}}")
        records = [(f"{path.name}[{i}]", i, record) for i, record in enumerate(data)]
    allowed = resolve_tag_set(tag_set) if tag_set is not None else None
    kept = []
    for where, position, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("tagged_text"), str):
            plan.rejected.append((where, "no 'tagged_text' string"))
            rejected_reasons["no tagged_text"] += 1
            continue
        text = record["tagged_text"]
        malformed = malformed_issues(text)
        if malformed:
            plan.rejected.append((where, "; ".join(issue.detail for issue in malformed)))
            rejected_reasons.update({issue.reason for issue in malformed})
            continue
        for issue in script_warnings(text, allowed):
            plan.warnings.append((where, issue.detail))
            warning_reasons[issue.reason] += 1
        slice_name = str(record.get("slice") or slice_for_tag_count(len(vocab.extract_tags(text))))
        kept.append((str(record.get("id", f"{position:06d}")), text, slice_name, str(record.get("domain", "unknown"))))
    splits = stratified_split([k[2] for k in kept], split_ratios or DEFAULT_SPLIT_RATIOS, seed)
    plan.scripts = [Script(i, text, s, d, split, "file") for (i, text, s, d), split in zip(kept, splits)]
    plan.rejected_reasons, plan.warning_reasons = dict(rejected_reasons), dict(warning_reasons)
    return plan


def tag_support(scripts: Sequence[Script]) -> dict[str, Counter]:
    """Tag occurrences per split."""
    support: dict[str, Counter] = {}
    for script in scripts:
        support.setdefault(script.split, Counter()).update(script.tags)
    return support
