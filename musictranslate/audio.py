"""Audio in and out: any common format to 16 kHz mono float, mu-law, atomic writes.

Knows nothing about models. Every failure is raised as ``AudioError``/``OutputError`` with a
message a user can act on.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import MU, SAMPLE_RATE
from .errors import AudioError, OutputError, first_line

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".opus")
"""Extensions treated as audio when scanning folders."""

_FFMPEG_ONLY = (".m4a", ".aac", ".opus")
SILENCE_PEAK = 1e-4
"""Peak amplitude below which a file counts as silent (-80 dBFS)."""
READ_BLOCK = 1 << 16
"""Frames read at a time: each block is downmixed and resampled as it arrives, so reading an
hours-long 96 kHz 6-channel file holds the 16 kHz mono result, not the file's channels and rate."""
MAX_PREALLOCATED = 1 << 30
"""Trust a file's frame count for preallocation only up to this (a broken header may claim 2**63)."""


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode formats libsndfile cannot read (m4a/aac) through pydub and ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(
            f"{path}: reading {path.suffix} needs ffmpeg, which is not on PATH; install it "
            "(`apt-get install ffmpeg`, `brew install ffmpeg`) or convert the file to .wav or .flac"
        )
    from pydub import AudioSegment

    try:
        segment = AudioSegment.from_file(path)
    except Exception as exc:  # pydub raises bare exceptions carrying ffmpeg's output
        raise AudioError(f"{path}: ffmpeg could not decode it ({first_line(exc)})") from None
    samples = np.array(segment.get_array_of_samples(), dtype=np.float32)
    samples = samples.reshape(-1, segment.channels) / float(1 << (8 * segment.sample_width - 1))
    return samples, segment.frame_rate


_WRITE_HINT = "is the disk full or the folder read-only? Free some space or choose another output folder"


def usual_mode(folder: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give under the current umask.

    ``mkstemp`` and ``mkdtemp`` create private 0600/0700 entries; renamed into place as they are,
    every output and model would be unreadable to anyone but its writer.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_failure(path: str | os.PathLike, exc: OSError) -> str:
    """One line for a failed write: the file, the system's reason, and what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "free some space or choose another output folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable output folder"
    else:
        hint = _WRITE_HINT
    return f"{path}: could not write ({exc.strerror or exc}); {hint}"


def _unreadable_reason(exc: BaseException, path: Path) -> str:
    """libsndfile's complaint without the path it repeats; its "does not exist" for a file that
    exists (what it says of a broken mp3) becomes what it means."""
    text = first_line(exc)
    prefix = f"Error opening {str(path)!r}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if "does not exist or is not a regular file" in text:
        text = "format not recognised"
    return text.rstrip(".")


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what C libraries print on file descriptor 2 while a file is decoded.

    libmpg123 (inside libsndfile) writes notes such as "Illegal Audio-MPEG-Header" straight to
    fd 2, around our own one-line error; Python's ``sys.stderr`` is not involved, so only a
    descriptor swap keeps a user's stderr to the one line that matters.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 to protect (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _blocks(handle: sf.SoundFile) -> Iterable[np.ndarray]:
    """``(frames, channels)`` float32 blocks until the file really ends.

    Not ``SoundFile.blocks``: it trusts the header's frame count, so a truncated file would yield
    stale buffer contents (and a header claiming 2**63 frames would never end).
    """
    while True:
        block = handle.read(READ_BLOCK, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        yield block


def _mono_stream(
    path: Path, blocks: Iterable[np.ndarray], rate: int, sample_rate: int, frames_hint: int
) -> np.ndarray:
    """Downmix, check and resample ``blocks`` one at a time into one preallocated mono array."""
    resampler = None
    if rate != sample_rate:
        resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
    hint = frames_hint if 0 < frames_hint <= MAX_PREALLOCATED else READ_BLOCK
    out = np.empty(math.ceil(hint * sample_rate / rate) + 64, dtype=np.float32)
    filled = 0

    def append(chunk: np.ndarray) -> None:
        nonlocal out, filled
        if filled + len(chunk) > len(out):  # the header undercounted: grow
            grown = np.empty(max(2 * len(out), filled + len(chunk)), dtype=np.float32)
            grown[:filled] = out[:filled]
            out = grown
        out[filled : filled + len(chunk)] = chunk
        filled += len(chunk)

    for block in blocks:
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: contains NaN or infinite samples; re-export the file")
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        append(resampler.resample_chunk(np.ascontiguousarray(mono)) if resampler else mono)
    if resampler is not None:
        append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    if filled == 0:
        raise AudioError(f"{path}: contains no samples")
    return out[:filled]


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``: channels averaged, resampled with soxr.

    The file is streamed block by block, so memory holds the result plus one block, whatever the
    file's channels, rate and length (design: bounded memory on hours-long files).
    """
    return read_audio(path, sample_rate)[0]


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """``load_audio``, and the file's own sample rate: outputs are written at it by default."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in _FFMPEG_ONLY:
        data, rate = _read_with_ffmpeg(path)
        return _mono_stream(path, [data], rate, sample_rate, len(data)), rate
    try:
        with _native_stderr_silenced(), sf.SoundFile(path) as handle:
            rate = handle.samplerate
            return _mono_stream(path, _blocks(handle), rate, sample_rate, handle.frames), rate
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(
            f"{path}: not a readable audio file ({_unreadable_reason(exc, path)}); "
            f"supported: {', '.join(AUDIO_EXTENSIONS)}"
        ) from None


def read_comment(path: str | os.PathLike) -> str:
    """The comment tag in a file's metadata (WAV INFO, Vorbis comment, ID3), ``""`` when it has
    none or cannot be read: only the header is opened, so a folder scan stays fast."""
    if Path(path).suffix.lower() in _FFMPEG_ONLY:
        return ""
    try:
        with _native_stderr_silenced(), sf.SoundFile(path) as handle:
            return handle.comment or ""
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return ""


def resample(audio: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """``audio`` at ``rate`` resampled to ``to_rate`` with soxr (its high-quality default)."""
    if rate == to_rate:
        return audio
    return soxr.resample(audio, rate, to_rate).astype(np.float32, copy=False)


def check_audible(audio: np.ndarray, name: str, min_samples: int) -> None:
    """Refuse input the model cannot work with: silent, or shorter than one latent frame."""
    if audio.shape[0] < min_samples:
        raise AudioError(
            f"{name}: too short: {_samples(audio.shape[0])}; give at least {_samples(min_samples)} of audio"
        )
    if _peak(audio) < SILENCE_PEAK:
        raise AudioError(f"{name}: is silent (peak below -80 dBFS); nothing to translate")


def _samples(count: int) -> str:
    """``1 sample (0.06 ms)``: milliseconds alone round a 1-sample file to "0 ms"."""
    return f"{count} sample{'s' if count != 1 else ''} ({count / SAMPLE_RATE * 1000:.2f} ms)"


def _peak(audio: np.ndarray) -> float:
    """Largest absolute sample without a full-length ``abs`` copy (hours-long files)."""
    return max(float(audio.max()), -float(audio.min())) if audio.size else 0.0


def mu_law_encode(audio: np.ndarray, mu: int = MU) -> np.ndarray:
    """Float audio in [-1, 1] -> integer classes 0..mu (8-bit mu-law, as in WaveNet).

    Louder input is clipped; NaN becomes silence, because as a class index it would turn into a
    garbage integer that crashes the loss or indexes out of the decoder's table.
    """
    clipped = np.nan_to_num(np.clip(audio, -1.0, 1.0), copy=False, nan=0.0)
    companded = np.sign(clipped) * np.log1p(mu * np.abs(clipped)) / np.log1p(mu)
    return np.floor((companded + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def mu_law_decode(classes: np.ndarray, mu: int = MU) -> np.ndarray:
    """Integer classes 0..mu -> float audio in [-1, 1].

    A lookup in a table of the mu + 1 levels: the same values as decoding every sample in
    float64, without four float64 temporaries the length of the output.
    """
    levels = 2.0 * np.arange(mu + 1, dtype=np.float64) / mu - 1.0
    table = (np.sign(levels) * np.expm1(np.abs(levels) * np.log1p(mu)) / mu).astype(np.float32)
    return table[np.asarray(classes)]


def companded(classes: np.ndarray, mu: int = MU) -> np.ndarray:
    """Mu-law classes as floats in [-1, 1]: what the encoder reads."""
    return (2.0 * np.asarray(classes, dtype=np.float32) / mu - 1.0).astype(np.float32)


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    force: bool = False,
    comment: str | None = None,
) -> Path:
    """Write ``audio`` atomically (temp file + rename), format from the extension.

    A crash, a full disk or a bad extension never leaves a half-written file at ``path``.
    ``comment`` goes into the file's own metadata (WAV INFO, Vorbis comment) where the format has
    a place for it, so an output says how it was made (model, domain, seed) wherever it is copied.
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
    if _peak(audio) > 1.0:
        audio = np.clip(audio, -1.0, 1.0)
    temp_name = ""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        with sf.SoundFile(temp_name, "w", sample_rate, 1, format=fmt) as handle:
            if comment:
                with suppress(RuntimeError):  # formats without string metadata
                    handle.comment = comment
            handle.write(audio)
        os.chmod(temp_name, usual_mode())
        with _native_stderr_silenced():
            written = sf.info(temp_name).frames
        if written != len(audio):  # libsndfile does not always report a short write
            raise OutputError(
                f"{path}: only {written} of {len(audio)} frames could be written; {_WRITE_HINT}"
            )
        os.replace(temp_name, path)
    except OSError as exc:
        raise OutputError(write_failure(path, exc)) from None
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise OutputError(f"{path}: could not write ({first_line(exc)}); {_WRITE_HINT}") from None
    finally:
        if temp_name and os.path.exists(temp_name):
            os.unlink(temp_name)
    return path
