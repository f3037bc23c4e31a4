"""Shared fixtures: a tiny randomly initialised model in a temporary registry, and test audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musictranslate.config import SAMPLE_RATE, preset
from musictranslate.model import ConfusionNet, Decoder, Encoder
from musictranslate.registry import save_model

DOMAINS = ("piano", "flute")

# Tiny models gain nothing from threads, and OpenMP spin-waits make them 20x slower whenever the
# two cores are shared with anything else.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"


def make_tiny_model(folder: Path, domains: tuple[str, ...] = DOMAINS, seed: int = 0) -> Path:
    """A random tiny model saved as a real registry folder."""
    torch.manual_seed(seed)
    cfg = preset("tiny")
    decoders = {d: Decoder(cfg) for d in domains}
    return save_model(
        folder, cfg, Encoder(cfg), ConfusionNet(cfg, len(domains)), decoders, {"test": True}, replace=True
    )


def tone(seconds: float = 0.5, freq: float = 440.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry root holding one tiny model named ``tiny``."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root / "tiny")
    return root


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "tune.wav"
    sf.write(path, tone(), SAMPLE_RATE)
    return path


def write_domain(folder: Path, freq: float, files: int = 2) -> None:
    """``files`` half-second tones, harmonics of ``freq``: a domain of training data."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sf.write(folder / f"{i}.wav", tone(0.5, freq * (i + 1)), SAMPLE_RATE)


def two_domains(root: Path) -> Path:
    """The smallest training set: ``root/low`` and ``root/high``, two tones each."""
    write_domain(root / "low", 220)
    write_domain(root / "high", 880)
    return root
