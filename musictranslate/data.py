"""Training data: domain folders -> files split by file -> one-domain batches with augmentation.

A dataset root holds one folder per domain. Each file goes to train/val/test by a hash of its
path and the seed, so the split is deterministic and recorded. A batch is a pure function of
``(seed, step, rank)``: every step draws its segments from its own RNG, which makes a resumed run
see exactly the batches an uninterrupted one would, and lets worker processes build batches
ahead without sharing state.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import AUDIO_EXTENSIONS, companded, load_audio, mu_law_encode
from .config import SAMPLE_RATE
from .errors import MusicTranslateError
from .names import DOMAIN_RULE, is_domain_name
from .scan import audio_files, subfolders

SILENT_RMS = 0.005
"""Segments quieter than this (about -46 dBFS) teach nothing and are redrawn."""
MAX_DRAWS = 20
READ_ERRORS = (sf.LibsndfileError, RuntimeError, OSError)
"""What reading a segment raises when a file went bad after the scan: that draw is skipped."""


class DataError(MusicTranslateError):
    """A dataset that cannot be trained on: no domains, empty folders, no readable audio."""


@dataclass(frozen=True)
class Augmentation:
    """The paper's O(s, r): pitch-shift a random 0.25-0.5 s stretch by up to +-0.5 semitones."""

    min_seconds: float = 0.25
    max_seconds: float = 0.5
    semitones: float = 0.5
    enabled: bool = True


def scan_domains(root: str | Path) -> dict[str, list[Path]]:
    """``{domain: files}`` for every sub-folder of ``root``; an empty domain folder is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give a folder with one sub-folder of audio per domain")
    domains = {}
    for folder in subfolders(root):
        if not is_domain_name(folder.name):
            raise DataError(f"{folder}: its name is the domain's, but {DOMAIN_RULE}; rename the folder")
        files = audio_files(folder)
        if not files:
            raise DataError(
                f"{folder}: domain folder has no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                "add audio or remove the folder"
            )
        domains[folder.name] = files
    if not domains:
        raise DataError(f"{root}: no domain folders found; expected {root}/<domain>/*.wav")
    return domains


def split_of(path: Path, seed: int, val: float = 0.1, test: float = 0.1) -> str:
    """'train', 'val' or 'test' from a hash of the file name: stable across machines and runs."""
    digest = hashlib.sha256(f"{seed}:{path.parent.name}/{path.name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def split_files(files: list[Path], seed: int, val: float = 0.1, test: float = 0.1) -> dict[str, list[Path]]:
    """Split by file; a domain with few files keeps at least one file for training."""
    split: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for path in files:
        split[split_of(path, seed, val, test)].append(path)
    if not split["train"]:
        moved = split["val"] or split["test"]
        split["train"].append(moved.pop(0))
    return split


class AudioSource:
    """One file's samples: read lazily from disk when it is 16 kHz, else decoded once into memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: np.ndarray | None = None
        try:
            info = sf.info(path)
            lazy = info.samplerate == SAMPLE_RATE and info.frames > 0
            self.length = info.frames
        except (sf.LibsndfileError, RuntimeError, TypeError):
            lazy = False
        if not lazy:
            self.samples = (load_audio(path) * 32767).astype(np.int16)
            self.length = len(self.samples)

    def read(self, start: int, length: int) -> np.ndarray:
        if self.samples is not None:
            return self.samples[start : start + length].astype(np.float32) / 32767
        data, _ = sf.read(self.path, start=start, frames=length, dtype="float32", always_2d=True)
        return data.mean(axis=1)


def open_sources(files: list[Path], min_length: int) -> tuple[list[AudioSource], int]:
    """Open every readable file at least ``min_length`` long; returns sources and skip count."""
    sources, skipped = [], 0
    for path in files:
        try:
            source = AudioSource(path)
        except MusicTranslateError:
            skipped += 1
            continue
        if source.length >= min_length:
            sources.append(source)
        else:
            skipped += 1
    return sources, skipped


def training_level_db(
    sources: list[list[AudioSource]], per_domain: int = 8, seconds: float = 30.0
) -> float | None:
    """Median level (gated RMS, dBFS) of the opening ``seconds`` of up to ``per_domain`` evenly
    picked files of each domain: recorded in the model, for inputs to be brought to (``input_fit``)."""
    from .loudness import loudness_db

    levels = []
    for domain in sources:
        for index in np.unique(np.linspace(0, len(domain) - 1, per_domain).astype(int)) if domain else []:
            source = domain[index]
            level = loudness_db(source.read(0, min(source.length, int(seconds * SAMPLE_RATE))))
            if level is not None:
                levels.append(level)
    return round(float(np.median(levels)), 2) if levels else None


def pitch_shift_stretch(segment: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """Return ``segment`` with a random stretch pitch-shifted (the decoder must undo it)."""
    import librosa

    length = len(segment)
    stretch = min(length, int(rng.uniform(aug.min_seconds, aug.max_seconds) * SAMPLE_RATE))
    start = int(rng.integers(0, length - stretch + 1))
    steps = float(rng.uniform(-aug.semitones, aug.semitones))
    out = segment.copy()
    shifted = librosa.effects.pitch_shift(segment[start : start + stretch], sr=SAMPLE_RATE, n_steps=steps)
    out[start : start + stretch] = shifted[:stretch]
    return out


Partners = list[list[list[tuple[int, AudioSource]]]]
"""Per domain, per source: the ``(domain index, source)`` of the same piece in each other domain."""


def same_pieces(sources: list[list[AudioSource]]) -> Partners:
    """Pair each file with the files of the same name in the other domains.

    Why by name: a parallel dataset (``make data``) renders one score in every domain under one
    file name, trimmed to the same first onset, so equal names are the same notes at the same
    sample positions. Data without such pairs simply has none, and trains as the paper does.
    """
    by_name: dict[str, list[tuple[int, AudioSource]]] = {}
    for index, domain in enumerate(sources):
        for source in domain:
            by_name.setdefault(source.path.stem, []).append((index, source))
    return [
        [[pair for pair in by_name[source.path.stem] if pair[0] != index] for source in domain]
        for index, domain in enumerate(sources)
    ]


class DomainBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is that step's batch, drawn from one domain.

    Domains take turns (step % k). Item: ``(domain_index, input_domains, encoder_input,
    target_classes)`` where the target is the undistorted audio of the step's domain as classes,
    and the encoder input is augmented audio as companded mu-law floats: the target itself (the
    paper's autoencoder), or, for a ``parallel`` share of the segments that have one, the same
    moment of the same piece in another domain (``input_domains`` says which, for the confusion
    net). Why the parallel share: decoding domain j from domain i's latent of the same notes tells
    the encoder directly to keep the notes and drop the timbre, which autoencoding only implies.
    """

    def __init__(
        self,
        sources: list[list[AudioSource]],
        batch_size: int,
        segment: int,
        seed: int,
        augmentation: Augmentation,
        rank: int = 0,
        parallel: float = 0.0,
    ) -> None:
        self.sources, self.batch_size, self.segment = sources, batch_size, segment
        self.seed, self.augmentation, self.rank = seed, augmentation, rank
        self.parallel = parallel
        self.partners = same_pieces(sources) if parallel > 0 else None

    def __len__(self) -> int:
        return 2**62

    def draw(self, domain: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
        """One non-silent segment of ``domain`` (files weighted by length), its file's index in
        the domain and its start."""
        sources = self.sources[domain]
        weights = np.array([s.length for s in sources], dtype=np.float64)
        segment, index, start = np.zeros(self.segment, dtype=np.float32), 0, 0
        for _ in range(MAX_DRAWS):
            index = int(rng.choice(len(sources), p=weights / weights.sum()))
            source = sources[index]
            start = int(rng.integers(0, source.length - self.segment + 1))
            try:
                segment = source.read(start, self.segment)
            except READ_ERRORS:
                continue  # a file that went bad after the scan: draw from another
            if len(segment) == self.segment and math.sqrt(float(np.mean(segment**2))) >= SILENT_RMS:
                break
        return segment, index, start

    def _partner_segment(
        self, domain: int, index: int, start: int, rng: np.random.Generator
    ) -> tuple[int, np.ndarray] | None:
        """The same stretch of the same piece in a random other domain, if one has it whole."""
        assert self.partners is not None
        partners = self.partners[domain][index]
        if not partners:
            return None
        other, source = partners[int(rng.integers(len(partners)))]
        if start + self.segment > source.length:
            return None
        try:
            segment = source.read(start, self.segment)
        except READ_ERRORS:
            return None
        return (other, segment) if len(segment) == self.segment else None

    def __getitem__(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        domain = step % len(self.sources)
        rng = np.random.default_rng([self.seed, step, self.rank])
        draws = [self.draw(domain, rng) for _ in range(self.batch_size)]
        clean = np.stack([segment for segment, _, _ in draws])
        inputs, input_domains = clean.copy(), np.full(self.batch_size, domain, dtype=np.int64)
        if self.partners is not None:
            for row, (_, index, start) in enumerate(draws):
                found = None
                if rng.random() < self.parallel:
                    found = self._partner_segment(domain, index, start, rng)
                if found is not None:
                    input_domains[row], inputs[row] = found
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noisy = (
                np.stack([pitch_shift_stretch(s, rng, self.augmentation) for s in inputs])
                if self.augmentation.enabled
                else inputs
            )
        target = mu_law_encode(clean)
        encoder_input = companded(mu_law_encode(noisy))
        return domain, *(torch.from_numpy(a) for a in (input_domains, encoder_input, target))
