"""Audio in and out: any common format to 16 kHz mono float, mu-law, atomic writes.

Knows nothing about models. Every failure is raised as ``AudioError``/``OutputError`` with a
message a user can act on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import MU, SAMPLE_RATE
from .errors import AudioError, OutputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".opus")
"""Extensions treated as audio when scanning folders."""

_FFMPEG_ONLY = (".m4a", ".aac", ".opus")
SILENCE_PEAK = 1e-4
"""Peak amplitude below which a file counts as silent (-80 dBFS)."""


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode formats libsndfile cannot read (m4a/aac) through pydub and ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(
            f"{path}: reading {path.suffix} needs ffmpeg; install it (e.g. `apt-get install ffmpeg`)"
        )
    from pydub import AudioSegment

    try:
        segment = AudioSegment.from_file(path)
    except Exception as exc:  # pydub raises bare exceptions carrying ffmpeg's output
        raise AudioError(f"{path}: ffmpeg could not decode it ({_first_line(exc)})") from None
    samples = np.array(segment.get_array_of_samples(), dtype=np.float32)
    samples = samples.reshape(-1, segment.channels) / float(1 << (8 * segment.sample_width - 1))
    return samples, segment.frame_rate


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``: channels averaged, resampled with soxr."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in _FFMPEG_ONLY:
        data, rate = _read_with_ffmpeg(path)
    else:
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioError(
                f"{path}: not a readable audio file ({_first_line(exc)}); "
                f"supported: {', '.join(AUDIO_EXTENSIONS)}"
            ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples; re-export the file")
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return mono


def check_audible(audio: np.ndarray, name: str, min_samples: int) -> None:
    """Refuse input the model cannot work with: silent, or shorter than one latent frame."""
    if audio.shape[0] < min_samples:
        raise AudioError(
            f"{name}: too short ({audio.shape[0] / SAMPLE_RATE * 1000:.0f} ms); "
            f"give at least {min_samples / SAMPLE_RATE * 1000:.0f} ms of audio"
        )
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise AudioError(f"{name}: is silent (peak below -80 dBFS); nothing to translate")


def mu_law_encode(audio: np.ndarray, mu: int = MU) -> np.ndarray:
    """Float audio in [-1, 1] -> integer classes 0..mu (8-bit mu-law, as in WaveNet)."""
    clipped = np.clip(audio, -1.0, 1.0)
    companded = np.sign(clipped) * np.log1p(mu * np.abs(clipped)) / np.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def mu_law_decode(classes: np.ndarray, mu: int = MU) -> np.ndarray:
    """Integer classes 0..mu -> float audio in [-1, 1]."""
    companded = 2.0 * np.asarray(classes, dtype=np.float64) / mu - 1.0
    return (np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(mu)) / mu).astype(np.float32)


def companded(classes: np.ndarray, mu: int = MU) -> np.ndarray:
    """Mu-law classes as floats in [-1, 1]: what the encoder reads."""
    return (2.0 * np.asarray(classes, dtype=np.float32) / mu - 1.0).astype(np.float32)


def save_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *, force: bool = False
) -> Path:
    """Write ``audio`` atomically (temp file + rename), format from the extension.

    A crash, a full disk or a bad extension never leaves a half-written file at ``path``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists; pass --force to overwrite")
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent}: output folder does not exist; create it first")
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise OutputError(
            f"{path}: cannot write .{fmt.lower()}; use one of "
            f"{', '.join('.' + f.lower() for f in ('WAV', 'FLAC', 'OGG', 'MP3'))}"
        )
    temp_name = ""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        sf.write(temp_name, np.clip(audio, -1.0, 1.0), sample_rate, format=fmt)
        os.replace(temp_name, path)
    except OSError as exc:
        raise OutputError(f"{path}: could not write ({exc.strerror or exc})") from None
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise OutputError(f"{path}: could not write ({_first_line(exc)})") from None
    finally:
        if temp_name and os.path.exists(temp_name):
            os.unlink(temp_name)
    return path
