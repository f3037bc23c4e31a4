"""pyin.py decodes what librosa.pyin decodes, on the settings every caller here uses."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_long_audio_is_tracked_in_chunks_that_decode_as_one_pass(monkeypatch):
    """Chunks of 1 s reading 0.5 s either side: every stitched frame as librosa's single pass."""
    import musictranslate.pyin as module

    monkeypatch.setattr(module, "CHUNK_SECONDS", 1.0)
    monkeypatch.setattr(module, "OVERLAP_SECONDS", 0.5)
    calls = []
    whole = module._whole
    monkeypatch.setattr(module, "_whole", lambda audio, **kw: calls.append(len(audio)) or whole(audio, **kw))
    audio = np.concatenate(list(_signals().values()))
    f0, voiced, prob = pyin(audio, sr=SR, **CONTOUR)
    want_f0, want_voiced, want_prob = librosa.pyin(audio, sr=SR, **CONTOUR)
    assert len(calls) > 3 and max(calls) < 2.1 * SR  # 1 s and 0.5 s either side, to whole hops
    np.testing.assert_array_equal(voiced, want_voiced)
    np.testing.assert_allclose(f0, want_f0, rtol=1e-12)
    np.testing.assert_allclose(prob, want_prob, atol=1e-12)


def test_tracking_and_retuning_a_tune_in_range_import_neither_librosa_nor_scipy_stats() -> None:
    """Importing librosa (and scipy.stats, scipy.signal behind it) costs about two seconds of a
    translation's start-up: the input fit, the pitch guide and the retune do without them, and
    only a transposition (``input_fit.pitch_shift``) still loads librosa."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from musictranslate.input_fit import fit_input\n"
        "from musictranslate.pitch_guide import PitchGuide\n"
        "from musictranslate.retune import retune\n"
        "tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)\n"
        "fitted = fit_input(tone, -20.0, 'auto')\n"
        "guide = PitchGuide.of(fitted.audio)\n"
        "retune(np.roll(fitted.audio, 7), guide)\n"
        "loaded = [m for m in ('librosa', 'scipy.stats', 'scipy.signal') if m in sys.modules]\n"
        "print(json.dumps([fitted.semitones, loaded]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, []]
