"""An independent domain classifier: a small CNN on log-mels that names the instrument.

Why: pitch and chroma say whether the notes survived a translation, not whether it *sounds like*
the target. A classifier trained on real renders of each domain, never on model outputs, counts
how often a translation is recognised as its target domain. It is trained by ``evaluate
classifier`` on the model's training data and stored in the model folder beside the registry's
files, in its own two files so the registry manifest is untouched:

    <model>/classifier.safetensors   weights (never pickled)
    <model>/classifier.json          domains, feature settings, sha256, training provenance

Re-saving a model (training it further) keeps the classifier while the model still has every
domain it knows. A classifier trained on one soundfont partly learns its quirks (docs/design.md,
"Data"): pass several ``data`` folders, one per soundfont, when you have them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import load_audio, mu_law_decode, mu_law_encode
from ..catalog import CLASSIFIER_FILES
from ..config import CLASSIFIER_MAX_SECONDS, CLASSIFIER_STEPS, SAMPLE_RATE
from ..errors import ModelError
from ..registry import KEPT, sha256_file
from ..safe_write import write_atomically, write_text
from . import EvaluationError
from .files import audio_files, domain_folders
from .reference import log_mel

WEIGHTS, META = CLASSIFIER_FILES
FORMAT_VERSION = 1
N_MELS = 64
WINDOW = 64
"""Log-mel frames per classified window: 64 x 16 ms ~ 1 s, like a training segment."""
SILENT_DB = 50.0
"""Windows whose mean frame level is this far below the clip's loudest frame are skipped: folk
tunes at score tempo are 40-64% near-silent frames, which say nothing about the instrument."""
CHANNELS = (16, 32, 64)
"""Twice the first recipe's widths: with them, a cosine-decayed rate and twice the audio, the
sustained domains (organ, flute, choir, strings) stopped passing for one another (the default
model's card, History, has the comparison)."""
CODEC = "mu-law 8-bit"
"""Every clip is heard through the model's own codec, recorded in the metadata under this name."""


class DomainCNN(nn.Module):
    """Three conv blocks over (mel, time), global average pooling, a linear layer to domains."""

    def __init__(self, n_domains: int, channels: Sequence[int] = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous, n_domains)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``mels`` ``(batch, n_mels, frames)`` -> logits ``(batch, n_domains)``."""
        return self.head(self.features(mels[:, None]).mean(dim=(2, 3)))


def features(audio: np.ndarray, codec: bool = True) -> np.ndarray:
    """Log-mel in dB, floored 100 dB below the clip's loudest bin (gain is removed per window).

    With ``codec`` the clip first goes through the model's 8-bit mu-law, because every
    translation does: a classifier that hears the renders uncoded learns the codec's noise floor
    as a domain cue (trained so, it named 2 of 5 mu-law-coded FluidR3 piano clips harpsichord).
    """
    if codec:
        audio = mu_law_decode(mu_law_encode(audio))
    mel = log_mel(audio, n_mels=N_MELS)
    return np.maximum(mel, mel.max() - 100.0)


def windows(mel: np.ndarray, hop: int = WINDOW // 2) -> np.ndarray:
    """Sounding ``WINDOW``-frame windows of ``mel``, each standardised, ``(n, n_mels, WINDOW)``.

    Each window's mean is removed, so loudness is no cue for the domain. A clip shorter than one
    window is padded at its floor.
    """
    if mel.shape[1] < WINDOW:
        mel = np.pad(mel, ((0, 0), (0, WINDOW - mel.shape[1])), constant_values=float(mel.min()))
    level = mel.max(axis=0)
    loud = level.max() - SILENT_DB
    starts = [s for s in range(0, mel.shape[1] - WINDOW + 1, hop) if level[s : s + WINDOW].mean() > loud]
    if not starts:
        return np.zeros((0, mel.shape[0], WINDOW), np.float32)
    stack = np.stack([mel[:, s : s + WINDOW] for s in starts])
    stack = stack - stack.mean(axis=(1, 2), keepdims=True)
    return (stack / 20.0).astype(np.float32)


@dataclass
class DomainClassifier:
    """A trained :class:`DomainCNN` and the domain names its outputs stand for."""

    domains: list[str]
    net: DomainCNN
    meta: dict

    @property
    def codec(self) -> bool:
        """Whether it was trained on coded audio (classifiers saved before ``CODEC`` were not)."""
        return self.meta.get("features", {}).get("codec") == CODEC

    @torch.inference_mode()
    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Domain probabilities of a clip: the softmax averaged over its sounding windows."""
        batch = windows(features(audio, self.codec))
        if len(batch) == 0:
            return np.full(len(self.domains), 1.0 / len(self.domains))
        self.net.eval()
        return F.softmax(self.net(torch.from_numpy(batch)), dim=1).mean(dim=0).numpy()

    def check_domain(self, domain: str) -> None:
        if domain not in self.domains:
            raise EvaluationError(
                f"the classifier knows no domain {domain!r} (it knows {', '.join(self.domains)}); "
                "retrain it on data that has it"
            )

    def predict(self, audio: np.ndarray) -> str:
        return self.domains[int(np.argmax(self.probabilities(audio)))]

    def save(self, folder: Path) -> Path:
        """Write weights then metadata (with the weights' sha256), each atomically."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        write_atomically(folder / WEIGHTS, lambda temp: save_file(state, temp), replace=True, kept=KEPT)
        meta = {**self.meta, "format_version": FORMAT_VERSION, "domains": self.domains}
        meta["file"], meta["sha256"] = WEIGHTS, sha256_file(folder / WEIGHTS)
        text = json.dumps(meta, indent=2) + "\n"
        write_text(folder / META, text, kept=KEPT)
        return folder / META


def load_classifier(folder: str | os.PathLike) -> DomainClassifier:
    """The classifier stored in a model folder, checked against its sha256 before loading."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path, weights = folder / META, folder / WEIGHTS
    if not meta_path.is_file():
        raise ModelError(
            f"{folder}: no domain classifier; train one with `musictranslate evaluate classifier`"
        )
    try:
        meta = json.loads(meta_path.read_text())
        domains = list(meta["domains"])
        channels = list(meta.get("channels", CHANNELS))
        version = int(meta["format_version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{meta_path}: unreadable classifier metadata ({exc}); retrain it") from None
    if version > FORMAT_VERSION:
        raise ModelError(f"{meta_path}: classifier format {version} is newer than supported; upgrade")
    if not weights.is_file() or sha256_file(weights) != meta.get("sha256"):
        raise ModelError(f"{weights}: missing or does not match its sha256; retrain the classifier")
    net = DomainCNN(len(domains), channels)
    try:
        net.load_state_dict(load_file(weights), strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise ModelError(f"{weights}: weights do not fit ({str(exc).splitlines()[0][:200]})") from None
    return DomainClassifier(domains, net.eval(), meta)


def _domain_folders(data: Sequence[Path], domains: Sequence[str] | None) -> dict[str, list[Path]]:
    """Audio files per domain, from every ``data`` root's ``<domain>/`` subfolders."""
    found: dict[str, list[Path]] = {}
    for root in data:
        for sub in domain_folders(root):
            if domains is None or sub.name in domains:
                found.setdefault(sub.name, []).extend(audio_files(sub))
    found = {d: files for d, files in found.items() if files}
    missing = sorted(set(domains or ()) - set(found))
    if missing:
        raise EvaluationError(
            f"no audio for domain(s) {', '.join(missing)} under {', '.join(map(str, data))}"
        )
    if len(found) < 2:
        raise EvaluationError(
            f"{', '.join(map(str, data))}: need audio in at least two domain subfolders, found "
            f"{', '.join(found) or 'none'}"
        )
    return found


def _load_windows(files: Sequence[Path], max_seconds: float) -> np.ndarray:
    """Standardised windows from ``files`` until ``max_seconds`` of audio have been read."""
    chunks, seconds = [], 0.0
    for path in files:
        audio = load_audio(path)
        audio = audio[: int((max_seconds - seconds) * SAMPLE_RATE)]
        seconds += len(audio) / SAMPLE_RATE
        if np.max(np.abs(audio), initial=0.0) > 1e-4:
            chunks.append(windows(features(audio), hop=WINDOW // 4))
        if seconds >= max_seconds:
            break
    return np.concatenate(chunks) if chunks else np.zeros((0, N_MELS, WINDOW), np.float32)


def _windows_per_domain(
    folders: dict[str, list[Path]], max_seconds: float
) -> tuple[list[str], list[np.ndarray]]:
    names = sorted(folders)
    sets = [_load_windows(folders[d], max_seconds) for d in names]
    for name, w in zip(names, sets, strict=True):
        if len(w) == 0:
            raise EvaluationError(f"domain {name!r}: every file is silent; nothing to train on")
    return names, sets


def _accuracy(net: DomainCNN, sets: list[np.ndarray]) -> float:
    net.eval()
    correct = total = 0
    with torch.inference_mode():
        for label, w in enumerate(sets):
            for start in range(0, len(w), 256):
                logits = net(torch.from_numpy(w[start : start + 256]))
                correct += int((logits.argmax(dim=1) == label).sum())
                total += len(logits)
    return correct / max(total, 1)


def train_classifier(
    data: Sequence[str | os.PathLike],
    domains: Sequence[str] | None = None,
    val: Sequence[str | os.PathLike] = (),
    steps: int = CLASSIFIER_STEPS,
    batch_size: int = 32,
    max_seconds: float = CLASSIFIER_MAX_SECONDS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DomainClassifier:
    """Train on every ``data`` root's ``<domain>/`` folders (balanced batches, Adam from 1e-3,
    cosine-decayed to 0 over ``steps``).

    ``max_seconds`` caps the audio read per domain and root; ``val`` roots, when given, give the
    held-out accuracy recorded in the metadata.
    """
    roots = [Path(d) for d in data]
    names, sets = _windows_per_domain(_domain_folders(roots, domains), max_seconds)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = DomainCNN(len(names))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    labels = torch.arange(batch_size) % len(names)  # balanced: every domain equally often
    started = time.monotonic()
    for step in range(steps):
        net.train()
        batch = np.stack([sets[label][rng.integers(len(sets[label]))] for label in labels.tolist()])
        loss = F.cross_entropy(net(torch.from_numpy(batch)), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, steps)
    meta: dict = {
        "channels": list(CHANNELS),
        "features": {"n_mels": N_MELS, "window_frames": WINDOW, "sample_rate": SAMPLE_RATE, "codec": CODEC},
        "training": {
            "data": [str(r) for r in roots],
            "steps": steps,
            "batch_size": batch_size,
            "seed": seed,
            "windows": {n: len(w) for n, w in zip(names, sets, strict=True)},
            "train_accuracy": _accuracy(net, sets),
            "seconds": round(time.monotonic() - started, 1),
        },
    }
    if val:
        _, val_sets = _windows_per_domain(_domain_folders([Path(v) for v in val], names), max_seconds)
        meta["training"]["val_accuracy"] = _accuracy(net, val_sets)
    return DomainClassifier(names, net.eval(), meta)


def recognition_rate(classifier: DomainClassifier, clips: Sequence[np.ndarray], domain: str) -> float:
    """Fraction of ``clips`` the classifier names ``domain`` (the domain-check score)."""
    classifier.check_domain(domain)
    return float(np.mean([classifier.predict(c) == domain for c in clips])) if clips else 0.0
