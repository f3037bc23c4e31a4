"""PNG figures for the report and the embedding study (matplotlib, no display needed).

Every function draws one figure into one file and closes it, so a report of many examples does
not accumulate open figures. matplotlib is imported here only, lazily, with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import SAMPLE_RATE
from ..safe_write import write_atomically
from . import optional_import
from .reference import MEL_HOP, log_mel

if TYPE_CHECKING:
    from .embedding import EmbeddingStudy
    from .pitch import Contour

DPI = 80


def _pyplot() -> Any:
    optional_import("matplotlib").use("Agg")
    return optional_import("matplotlib.pyplot")


def _save(fig: Any, path: Path) -> Path:
    write_atomically(
        path, lambda temp: fig.savefig(temp, format="png", dpi=DPI, bbox_inches="tight"), replace=True
    )
    _pyplot().close(fig)
    return path


def spectrograms(clips: Mapping[str, np.ndarray], path: Path) -> Path:
    """Log-mel spectrograms side by side, one panel per labelled clip, on one colour scale."""
    plt = _pyplot()
    mels = {label: log_mel(audio) for label, audio in clips.items()}
    top = max(float(m.max()) for m in mels.values())
    fig, axes = plt.subplots(1, len(mels), figsize=(4 * len(mels), 3), squeeze=False, sharey=True)
    for ax, (label, mel) in zip(axes[0], mels.items(), strict=True):
        seconds = mel.shape[1] * MEL_HOP / SAMPLE_RATE
        image = ax.imshow(
            mel, origin="lower", aspect="auto", vmin=top - 80, vmax=top, extent=(0, seconds, 0, mel.shape[0])
        )
        ax.set_title(label)
        ax.set_xlabel("seconds")
    axes[0][0].set_ylabel("mel band")
    fig.colorbar(image, ax=axes[0].tolist(), label="dB")
    return _save(fig, path)


def contours(tracks: Mapping[str, Contour], path: Path) -> Path:
    """pyin pitch contours of several clips on one axis, in MIDI note numbers (unvoiced: gaps)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    for label, contour in tracks.items():
        ax.plot(contour.times, contour.cents() / 100.0, label=label, linewidth=1.5)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def domain_scores(
    table: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    path: Path,
    metrics: Sequence[tuple[str, str]],
) -> Path:
    """Grouped bars: one panel per ``(metric, title)``, target domains on x, one bar per system.

    ``table[system][domain][metric]`` holds the means; missing values leave a gap, and a metric
    no system has is left out.
    """
    plt = _pyplot()
    systems = list(table)
    domains = sorted({d for per_domain in table.values() for d in per_domain})
    metrics = [  # a metric nobody has (no classifier) would be an empty panel
        (metric, title)
        for metric, title in metrics
        if any(row.get(metric) is not None for per_domain in table.values() for row in per_domain.values())
    ]
    if not metrics:
        metrics = [("n", "translations")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3), squeeze=False)
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(domains))
    for ax, (metric, title) in zip(axes[0], metrics, strict=True):
        for k, system in enumerate(systems):
            values = [table[system].get(d, {}).get(metric) for d in domains]
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x + (k - (len(systems) - 1) / 2) * width, heights, width, label=system)
        ax.set_xticks(x, domains, rotation=30)
        ax.set_title(title, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(systems))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def similarity_grid(study: EmbeddingStudy, path: Path, centred: bool = False) -> Path:
    """Every instrument against every other as pitch x pitch cosine-similarity matrices: self
    matrices on the diagonal of the grid, cross-instrument ones off it."""
    plt = _pyplot()
    n = len(study.instruments)
    fig, axes = plt.subplots(n, n, figsize=(2.2 * n + 1, 2.2 * n), squeeze=False)
    low = min(float(study.similarity(i, j, centred).min()) for i in range(n) for j in range(n))
    image = None
    for i in range(n):
        for j in range(n):
            ax = axes[i][j]
            image = ax.imshow(study.similarity(i, j, centred), vmin=min(low, 0.0), vmax=1.0, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == n - 1:
                ax.set_xlabel(study.instruments[j])
            if j == 0:
                ax.set_ylabel(study.instruments[i])
    pitches = f"MIDI {study.pitches[0]}-{study.pitches[-1]}"
    fig.suptitle(f"cosine similarity of note embeddings, {pitches} ({'centred' if centred else 'raw'})")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    return _save(fig, path)
