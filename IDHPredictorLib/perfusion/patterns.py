"""Interpretation of the attention (Choi et al. 2019, Fig. 4): attention on the full curve, the
curve's four segments, temporal patterns TP1..TP6, their frequency by genotype, heat maps."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import MonteCarloMethod, fisher_exact

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


def temporal_pattern(attention: np.ndarray, segments: np.ndarray, rank_by: str = "mean") -> tuple[int, tuple[str, str]]:
    """TP number and the two segments with the highest attention (segments absent from the curve
    are never chosen). ``rank_by`` "mean" (attention per sample: independent of a segment's
    length, but a 2-4-sample down- or upslope wins with one strong sample) or "sum" (the
    segment's share of all attention: favours the long baseline and plateau). Choi et al. do not
    say which; the evaluation reports both (README, "Temporal patterns")."""
    if rank_by not in ("mean", "sum"):
        raise ValueError(f"rank_by must be 'mean' or 'sum', not {rank_by!r}")
    reduce = np.mean if rank_by == "mean" else np.sum
    scores = np.array([reduce(attention[segments == s]) if np.any(segments == s) else -np.inf for s in range(4)])
    top = sorted(np.argsort(-scores)[:2])
    pair = (SEGMENTS[top[0]], SEGMENTS[top[1]])
    return PATTERN_NUMBER[pair], pair


# Monte-Carlo tables for the exact test of tables larger than 2 x 2 (p resolution 1e-4)
PATTERN_TEST_TABLES = 9999


def pattern_table(patterns: list[int], mutant: np.ndarray, seed: int = 0) -> dict[str, object]:
    """Counts of TP1..TP6 by genotype and Fisher's exact test of independence (empty rows
    dropped): exact for a 2 x 2 table, Monte-Carlo over tables with the same margins otherwise.
    Not a chi-square test: pattern tables have expected counts far below 5 (one pattern often
    holds almost every patient), where the chi-square p-value is not valid."""
    mutant = np.asarray(mutant).astype(bool)
    counts = np.array([[sum(1 for p, m in zip(patterns, mutant) if p == number and m == flag) for flag in (True, False)]
                       for number in range(1, 7)])
    used = counts[counts.sum(axis=1) > 0]
    test: dict[str, object] = {"test": None, "p_value": None}
    if len(used) == 2 and np.all(used.sum(axis=0) > 0):
        test = {"test": "Fisher's exact (2 x 2)", "p_value": float(fisher_exact(used).pvalue)}
    elif len(used) > 2 and np.all(used.sum(axis=0) > 0):
        method = MonteCarloMethod(n_resamples=PATTERN_TEST_TABLES, rng=np.random.default_rng(seed))
        test = {"test": f"Fisher's exact, Monte-Carlo ({PATTERN_TEST_TABLES} tables)",
                "p_value": float(fisher_exact(used, method=method).pvalue)}
    return {"counts": {f"TP{n}": {"mutant": int(c[0]), "wildtype": int(c[1])} for n, c in zip(range(1, 7), counts)},
            **test}


def pattern_test_text(table: dict[str, object]) -> str:
    """``Fisher's exact (2 x 2): p = 0.042`` or why there is no test."""
    if table["p_value"] is None:
        return "no test (a single pattern or a single genotype)"
    return f"{table['test']}: p = {table['p_value']:.3g}"


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
