"""The studio's views of a transcript as HTML: the tagged text with every tag coloured by its category (emotion,
reaction, delivery, pause, sound effect; unknown tags marked) and emphasis in bold, the per-tag counts, and a
waveform with the segments on a timeline, each coloured by its emotion and labelled with its speaker.

Every tag and emphasis rule is `evoxtral.scoring.tags`'s; this module only draws.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

import numpy as np

from evoxtral.scoring.tags import CATEGORIES, VOCABULARY, emphasis_spans, extract_tags, segment_emotion
from evoxtral.serving.results import TimedText
from evoxtral.serving.segmentation import SAMPLING_RATE

UNKNOWN = "unknown"
CATEGORY_LABELS = {
    "emotion": "emotion",
    "reaction": "reaction",
    "delivery": "delivery",
    "pause": "pause",
    "sound_effect": "sound",
    UNKNOWN: "not in the vocabulary",
}
EMOTION_COLOURS = {
    "joy": "#f4b400",
    "sadness": "#4a7bd0",
    "anger": "#d9412b",
    "fear": "#8e5bd0",
    "surprise": "#ef7d22",
    "interest": "#1f9e89",
    "contempt": "#8c6d4f",
    "neutral": "#9aa0a6",
}
WAVEFORM_BINS = 600

STUDIO_CSS = """
.evx-transcript { line-height: 1.9; font-size: 1.05rem; }
.evx-tag { border-radius: 0.4em; padding: 0.05em 0.4em; font-size: 0.9em; white-space: nowrap; }
.evx-cat-emotion { background: #ecdcfb; color: #5b2a91; }
.evx-cat-reaction { background: #fde3c8; color: #8a4305; }
.evx-cat-delivery { background: #d6e6fb; color: #1d4f91; }
.evx-cat-pause { background: #e6e7e9; color: #44484d; }
.evx-cat-sound_effect { background: #d3f1df; color: #17663a; }
.evx-cat-unknown { background: #fde0dd; color: #9b1c10; border: 1px dashed #9b1c10; }
.evx-emphasis { font-weight: 800; text-decoration: underline; text-decoration-thickness: 2px; }
.evx-speaker { font-weight: 600; color: #555; margin-right: 0.4em; }
.evx-legend { display: flex; gap: 0.5em; flex-wrap: wrap; margin-bottom: 0.6em; }
.evx-empty { color: #777; font-style: italic; }
.evx-counts { border-collapse: collapse; }
.evx-counts td, .evx-counts th { padding: 0.15em 0.7em; text-align: left; }
.evx-timeline { position: relative; width: 100%; height: 150px; background: #f7f7f8; border-radius: 6px; }
.evx-waveform { position: absolute; left: 0; top: 0; width: 100%; height: 100px; }
.evx-lanes { position: absolute; left: 0; top: 100px; width: 100%; height: 34px; }
.evx-segment { position: absolute; top: 0; height: 34px; border-radius: 4px; cursor: pointer; overflow: hidden;
  color: #fff; font-size: 0.72rem; line-height: 1.1; padding: 2px 4px; box-sizing: border-box; opacity: 0.9;
  border: 1px solid rgba(0,0,0,0.25); }
.evx-segment:hover { opacity: 1; outline: 2px solid #222; }
.evx-axis { position: absolute; left: 0; bottom: 0; width: 100%; font-size: 0.7rem; color: #666; }
.evx-axis span { position: absolute; transform: translateX(-50%); }
.evx-status { padding: 0.4em 0.8em; border-radius: 6px; }
.evx-ok { background: #eef6ee; color: #1e4d2b; }
.evx-error { background: #fde0dd; color: #9b1c10; font-weight: 600; }
"""


def _category(name: str, known: bool) -> str:
    return VOCABULARY[name].category if known and name in VOCABULARY else UNKNOWN


def _text_with_emphasis(text: str, start: int, stop: int, emphasis: list[tuple[int, int]]) -> str:
    pieces, cursor = [], start
    for first, last in emphasis:
        if first >= start and last <= stop:
            pieces.append(html.escape(text[cursor:first]))
            pieces.append(f'<strong class="evx-emphasis">{html.escape(text[first:last])}</strong>')
            cursor = last
    pieces.append(html.escape(text[cursor:stop]))
    return "".join(pieces)


def highlight_tagged_text(text: str) -> str:
    """One transcript as HTML: tags as coloured chips (class evx-tag evx-cat-<category>, the canonical name in
    data-tag), emphasised words in bold."""
    emphasis = emphasis_spans(text)
    pieces, cursor = [], 0
    for span in extract_tags(text):
        pieces.append(_text_with_emphasis(text, cursor, span.start, emphasis))
        category = _category(span.name, span.known)
        title = f"{span.name}: {CATEGORY_LABELS[category]}" + (f" ({span.modifier})" if span.modifier else "")
        pieces.append(
            f'<span class="evx-tag evx-cat-{category}" data-tag="{html.escape(span.name)}" '
            f'data-category="{category}" title="{html.escape(title)}">[{html.escape(span.raw)}]</span>'
        )
        cursor = span.end
    pieces.append(_text_with_emphasis(text, cursor, len(text), emphasis))
    return "".join(pieces)


def legend_html() -> str:
    chips = "".join(
        f'<span class="evx-tag evx-cat-{category}">{CATEGORY_LABELS[category]}</span>'
        for category in (*CATEGORIES, UNKNOWN)
    )
    return f'<div class="evx-legend">{chips}<strong class="evx-emphasis">EMPHASIS</strong></div>'


def transcript_html(segments: Sequence[TimedText]) -> str:
    """The whole transcript, one paragraph per segment (with its speaker when diarized)."""
    paragraphs = [
        f'<p class="evx-line" data-segment="{index}">'
        + (f'<span class="evx-speaker">{html.escape(segment.speaker)}:</span> ' if segment.speaker else "")
        + highlight_tagged_text(segment.text.strip())
        + "</p>"
        for index, segment in enumerate(segments)
        if segment.text.strip()
    ]
    body = "".join(paragraphs) or '<p class="evx-empty">No speech was found in this recording.</p>'
    return f'<div class="evx-transcript">{legend_html()}{body}</div>'


def tag_count_rows(segments: Sequence[TimedText]) -> list[list]:
    """[tag, category, count] for every tag in the transcript, most frequent first."""
    counts: Counter = Counter()
    categories = {}
    for segment in segments:
        for span in extract_tags(segment.text):
            counts[span.name] += 1
            categories[span.name] = CATEGORY_LABELS[_category(span.name, span.known)]
    return [[name, categories[name], count] for name, count in sorted(counts.items(), key=lambda item: -item[1])]


def waveform_peaks(audio: np.ndarray, bins: int = WAVEFORM_BINS) -> np.ndarray:
    """The peak absolute amplitude of each of ``bins`` equal slices, scaled so the loudest is 1."""
    if audio.size == 0:
        return np.zeros(bins, np.float32)
    edges = np.linspace(0, audio.size, bins + 1).astype(int)
    peaks = np.array([np.abs(audio[a:b]).max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    top = peaks.max()
    return (peaks / top if top > 0 else peaks).astype(np.float32)


def _axis_ticks(duration: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration / s <= 10), 1200)
    return [t for t in np.arange(0, duration + 1e-9, step)]


def timeline_html(audio: np.ndarray, segments: Sequence[TimedText]) -> str:
    """The waveform (SVG) with one block per segment under it, placed by its times and coloured by its emotion;
    each block carries its index (data-index) so a click can play it."""
    duration = max(audio.size / SAMPLING_RATE, 1e-6)
    peaks = waveform_peaks(audio)
    bars = " ".join(f"M{i} {50 - 48 * p:.1f}V{50 + 48 * p:.1f}" for i, p in enumerate(peaks))
    svg = (
        f'<svg class="evx-waveform" viewBox="0 0 {len(peaks)} 100" preserveAspectRatio="none">'
        f'<path d="{bars}" stroke="#5f6368" stroke-width="1" fill="none"/></svg>'
    )
    blocks = []
    for index, segment in enumerate(segments):
        emotion = segment_emotion(segment.text)
        left = 100 * segment.start / duration
        width = max(100 * (segment.end - segment.start) / duration, 0.5)
        label = emotion.emotion + (f" · {segment.speaker}" if segment.speaker else "")
        title = f"{segment.start:.2f}-{segment.end:.2f} s · {label}: {segment.text.strip()}"
        blocks.append(
            f'<div class="evx-segment" data-index="{index}" data-emotion="{emotion.emotion}" '
            f'data-speaker="{html.escape(segment.speaker or "")}" title="{html.escape(title)}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%;background:{EMOTION_COLOURS.get(emotion.emotion, "#777")}">'
            f"{html.escape(label)}</div>"
        )
    ticks = "".join(f'<span style="left:{100 * t / duration:.2f}%">{t:g} s</span>' for t in _axis_ticks(duration))
    return (
        f'<div class="evx-timeline" data-duration="{duration:.3f}">{svg}'
        f'<div class="evx-lanes">{"".join(blocks)}</div><div class="evx-axis">{ticks}</div></div>'
    )
