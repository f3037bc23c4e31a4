"""pyin.py decodes what librosa.pyin decodes, on the settings every caller here uses."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from musictranslate.evaluate.pitch import FMAX, FMIN, FRAME_LENGTH, HOP, RESOLUTION
from musictranslate.pyin import pyin

SR = 16000
CONTOUR = {
    "fmin": FMIN,
    "fmax": FMAX,
    "frame_length": FRAME_LENGTH,
    "hop_length": HOP,
    "resolution": RESOLUTION,
}
INPUT_FIT = {"fmin": 60.0, "fmax": 2500.0, "frame_length": 2048, "hop_length": 1024, "resolution": 0.25}


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * SR)) / SR
    glide = 220.0 * 2 ** (2 * t / t[-1]) * (1 + 0.01 * np.sin(2 * np.pi * 6 * t))  # two octaves up
    melody = np.sin(2 * np.pi * np.cumsum(glide) / SR)
    jump = np.sin(2 * np.pi * np.where(t < 0.75, 300.0, 1200.0) * t)  # two octaves in one frame
    chord = sum(np.sin(2 * np.pi * f * t) for f in (196.0, 247.0, 294.0))
    gap = np.concatenate([melody[: SR // 2], np.zeros(SR // 4), 0.05 * rng.standard_normal(SR // 2)])
    return {
        name: (0.3 * x / np.abs(x).max()).astype(np.float32)
        for name, x in {"melody": melody, "jump": jump, "chord": chord, "gap": gap}.items()
    }


@pytest.mark.parametrize("name", ["melody", "jump", "chord", "gap"])
@pytest.mark.parametrize(
    "settings",
    [CONTOUR, INPUT_FIT],
    ids=["contour", "input-fit"],
)
def test_pyin_equals_librosa(name, settings):
    audio = _signals()[name]
    f0, voiced, prob = pyin(audio, sr=SR, **settings)
    want_f0, want_voiced, want_prob = librosa.pyin(audio, sr=SR, **settings)
    np.testing.assert_array_equal(voiced, want_voiced)
    np.testing.assert_allclose(f0, want_f0, rtol=1e-12)  # NaN where unvoiced, in both
    np.testing.assert_allclose(prob, want_prob, atol=1e-12)
    assert voiced.any() or name == "chord"
