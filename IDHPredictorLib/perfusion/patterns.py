"""Interpretation of the attention (Choi et al. 2021, Fig. 4): attention on the full curve, the
curve's four segments, temporal patterns TP1..TP6, their frequency by genotype, heat maps."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import chi2_contingency

from ..io.atomic import atomic_path
from ..plotting import plt
from .curves import CHANNELS, GRID_FRAMES, WINDOW_FRAMES

SEGMENTS = ("baseline", "downslope", "upslope", "plateau")
# TP number of each unordered pair of segments, in the (and the paper's) numbering
PATTERN_NUMBER = {pair: number for number, pair in enumerate(combinations(SEGMENTS, 2), start=1)}
RECOVERY_FRACTION = 0.9  # the upslope ends when 90 % of the way from the minimum back to the plateau


def full_curve_attention(window_attention: np.ndarray) -> np.ndarray:
    """(GRID_FRAMES,) attention: each grid sample's mean over the windows covering it, renormalised."""
    total = np.zeros(GRID_FRAMES)
    count = np.zeros(GRID_FRAMES)
    for start, weights in enumerate(window_attention):
        total[start:start + WINDOW_FRAMES] += weights
        count[start:start + WINDOW_FRAMES] += 1
    attention = total / np.maximum(count, 1)
    return attention / attention.sum()


def curve_segments(curve: np.ndarray, grid_s: np.ndarray) -> np.ndarray:
    """Segment index (0..3, see ``SEGMENTS``) of each sample of a signal curve on the grid:
    baseline before the bolus arrival (t < 0), downslope to the minimum, upslope until the curve
    has recovered ``RECOVERY_FRACTION`` of the way to its plateau (mean of the last 8 samples),
    plateau after."""
    minimum = int(np.argmin(curve))
    plateau_level = curve[-8:].mean()
    target = curve[minimum] + RECOVERY_FRACTION * (plateau_level - curve[minimum])
    after = np.flatnonzero(curve[minimum:] >= target)
    recovered = minimum + (int(after[0]) if len(after) else len(curve) - minimum - 1)
    segments = np.full(len(curve), 3)
    segments[:recovered] = 2
    segments[: minimum + 1] = 1
    segments[grid_s < 0] = 0
    return segments


def temporal_pattern(attention: np.ndarray, segments: np.ndarray) -> tuple[int, tuple[str, str]]:
    """TP number and the two segments with the highest mean attention (segments absent from the
    curve are never chosen)."""
    means = np.array([attention[segments == s].mean() if np.any(segments == s) else -np.inf for s in range(4)])
    top = sorted(np.argsort(-means)[:2])
    pair = (SEGMENTS[top[0]], SEGMENTS[top[1]])
    return PATTERN_NUMBER[pair], pair


def pattern_table(patterns: list[int], mutant: np.ndarray) -> dict[str, object]:
    """Counts of TP1..TP6 by genotype and a chi-square test of independence (empty rows dropped)."""
    mutant = np.asarray(mutant).astype(bool)
    counts = np.array([[sum(1 for p, m in zip(patterns, mutant) if p == number and m == flag) for flag in (True, False)]
                       for number in range(1, 7)])
    used = counts[counts.sum(axis=1) > 0]
    if len(used) >= 2 and np.all(used.sum(axis=0) > 0):
        chi2, p_value, dof, _ = chi2_contingency(used)
        test = {"chi2": float(chi2), "dof": int(dof), "p_value": float(p_value)}
    else:
        test = {"chi2": None, "dof": None, "p_value": None}
    return {"counts": {f"TP{n}": {"mutant": int(c[0]), "wildtype": int(c[1])} for n, c in zip(range(1, 7), counts)},
            **test}


def attention_heatmap(curves: np.ndarray, attention: np.ndarray, grid_s: np.ndarray, path: Path, title: str,
                      present: tuple[bool, ...] | None = None) -> None:
    """Signal-time curves (z-normalised) over a heat map of the attention, as in the paper's Figs. 4-5."""
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=110)
    step = grid_s[1] - grid_s[0]
    low, high = float(curves.min()) - 0.3, float(curves.max()) + 0.3
    axes.imshow(attention[None, :], aspect="auto", cmap="magma", alpha=0.75,
                extent=(grid_s[0] - step / 2, grid_s[-1] + step / 2, low, high), origin="lower")
    for index, name in enumerate(CHANNELS):
        if present is None or present[index]:
            axes.plot(grid_s, curves[index], label=name, linewidth=1.4)
    axes.set(xlabel="time from bolus arrival (s)", ylabel="z-normalised signal", title=title, ylim=(low, high))
    axes.legend(fontsize=7, loc="lower right")
    figure.colorbar(axes.images[0], ax=axes, label="attention", fraction=0.04)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
