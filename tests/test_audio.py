"""Audio in and out: formats, channels, rates, mu-law."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictranslate import load_audio, save_audio
from musictranslate.audio import mu_law_decode, mu_law_encode
from musictranslate.errors import AudioError, OutputError

from .conftest import tone


def test_mu_law_round_trip_is_close_and_uses_256_classes() -> None:
    x = np.linspace(-1, 1, 10001, dtype=np.float32)
    classes = mu_law_encode(x)
    assert classes.min() == 0 and classes.max() == 255
    assert np.abs(mu_law_decode(classes) - x).max() < 0.025
    assert mu_law_encode(np.zeros(1))[0] == 128


def test_stereo_44k_becomes_mono_16k(tmp_path: Path) -> None:
    left = tone(1.0, 440, 44100)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, left], axis=1), 44100)
    audio = load_audio(path)
    assert audio.ndim == 1 and abs(len(audio) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_m4a_through_ffmpeg(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.0), 16000)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(m4a)], check=True)
    assert abs(len(load_audio(m4a)) - 16000) < 2000


@pytest.mark.parametrize(
    "content,message",
    [(b"", "empty"), (b"RIFF\x00\x00", "not a readable"), (b"\x01" * 999, "not a readable")],
)
def test_bad_files_raise_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    save_audio(path, tone())
    with pytest.raises(OutputError, match="--force"):
        save_audio(path, tone())
    with pytest.raises(OutputError, match="cannot write"):
        save_audio(tmp_path / "out.xyz", tone())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
