"""FluidSynth rendering: MIDI (file or bytes) + GM program -> 16 kHz mono float audio.

Two backends, same settings (16 kHz, gain 0.2, reverb and chorus off so a domain is the
instrument and not the room):

* ``lib``: libfluidsynth through ctypes, soundfont loaded once per process. Launching the CLI
  costs ~0.4 s per file just to load the 148 MB FluidR3 soundfont, which for ~800 pieces x 6
  domains is longer than the rendering itself; in-process rendering runs ~350-1700x real time
  per core depending on the program (choir and strings are the slowest). It renders float
  samples, so nothing clips before loudness normalisation.
* ``cli``: the ``fluidsynth -ni -F`` program under a hard wall-clock timeout and an output-size
  watchdog (a hung note once made it write a 21 GB file). Used where the library cannot be
  loaded, and as a cross-check in the tests.

Both cap the rendered length (``max_seconds`` plus a release tail), and the lib backend also
honours the wall-clock ``timeout``. :func:`render_midi` is the reusable entry point (one program,
one file); :func:`render_note` renders a single pitch for NSynth-style note studies;
:func:`finish` trims and loudness-normalises a render without ever clipping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..config import SAMPLE_RATE  # rendering directly at the model's rate avoids a resampling pass
from ..safe_write import write_atomically
from .midi import read_midi, set_program, single_note_score, write_midi

GAIN = 0.2
"""FluidSynth master gain: 0.5 clipped some pieces in 16-bit output; 0.2 leaves headroom."""

GM_PROGRAMS: dict[str, int] = {
    "piano": 0,
    "harpsichord": 6,
    "organ": 19,
    "strings": 48,
    "choir": 52,
    "flute": 73,
    "violin": 40,
    "whistle": 78,
}
"""General MIDI programs (0-based) of the domains the recipes know by name."""

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
"""Where Debian/Ubuntu/Fedora put the fluid-soundfont-gm soundfont."""

TAIL_SECONDS = 3.0
"""Longest release tail rendered after the last event (then trailing silence is trimmed)."""

TARGET_RMS_DBFS = -20.0
"""Loudness target: RMS over non-silent frames. Programs differ by ~12 dB RMS otherwise."""

PEAK_DBFS = -1.0
"""Ceiling for the peak after normalisation: loudness never buys clipping."""

SILENT_PEAK = 1e-4
"""A render whose peak stays below this (-80 dBFS) is a failure, not data."""

_BLOCK = 4096


class RenderError(RuntimeError):
    """A render failed: no synthesiser, timeout, runaway output, or silence."""


def find_soundfont(path: str | os.PathLike | None = None) -> Path | None:
    """The soundfont to use: ``path``, ``$MUSICTRANSLATE_SOUNDFONT``, or a known GM location."""
    for candidate in (path, os.environ.get("MUSICTRANSLATE_SOUNDFONT"), *SOUNDFONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def fluidsynth_cli() -> str | None:
    """Path of the ``fluidsynth`` program, if installed."""
    return shutil.which("fluidsynth")


def _load_lib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, cp, ci, cd = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_double
    sigs = {
        "new_fluid_settings": ([], vp),
        "delete_fluid_settings": ([vp], None),
        "fluid_settings_setnum": ([vp, cp, cd], ci),
        "fluid_settings_setint": ([vp, cp, ci], ci),
        "fluid_settings_setstr": ([vp, cp, cp], ci),
        "new_fluid_synth": ([vp], vp),
        "delete_fluid_synth": ([vp], None),
        "fluid_synth_sfload": ([vp, cp, ci], ci),
        "fluid_synth_system_reset": ([vp], ci),
        "fluid_synth_all_sounds_off": ([vp, ci], ci),
        "fluid_synth_get_active_voice_count": ([vp], ci),
        "fluid_synth_write_float": ([vp, ci, vp, ci, ci, vp, ci, ci], ci),
        "new_fluid_player": ([vp], vp),
        "delete_fluid_player": ([vp], None),
        "fluid_player_add_mem": ([vp, vp, ctypes.c_size_t], ci),
        "fluid_player_play": ([vp], ci),
        "fluid_player_stop": ([vp], ci),
        "fluid_player_get_status": ([vp], ci),
        "fluid_set_log_function": ([ci, vp, vp], vp),
    }
    try:
        for fname, (args, res) in sigs.items():
            fn = getattr(lib, fname)
            fn.argtypes, fn.restype = args, res
    except AttributeError:
        return None
    for level in (2, 3, 4):  # FLUID_WARN, FLUID_INFO, FLUID_DBG: keep build output readable
        lib.fluid_set_log_function(level, None, None)
    return lib


_LIB: ctypes.CDLL | bool | None = False
_FLUID_PLAYER_PLAYING = 1


def fluidsynth_lib() -> ctypes.CDLL | None:
    """The loaded libfluidsynth (cached), or None where it is not installed."""
    global _LIB
    if _LIB is False:
        _LIB = _load_lib()
    return _LIB or None


class Synth:
    """One in-process FluidSynth with a soundfont loaded once; renders MIDI bytes to mono float.

    Not thread-safe; use one per process (:func:`render_midi` keeps a per-process cache).
    """

    def __init__(
        self, soundfont: str | os.PathLike, sample_rate: int = SAMPLE_RATE, gain: float = GAIN
    ) -> None:
        lib = fluidsynth_lib()
        if lib is None:
            raise RenderError("libfluidsynth is not installed (Debian: apt-get install fluidsynth)")
        self._lib = lib
        self.sample_rate = sample_rate
        self.soundfont = str(soundfont)
        self._settings = lib.new_fluid_settings()
        for key, value in (("synth.sample-rate", float(sample_rate)), ("synth.gain", gain)):
            lib.fluid_settings_setnum(self._settings, key.encode(), value)
        for key, ivalue in (
            ("synth.reverb.active", 0),
            ("synth.chorus.active", 0),
            ("synth.cpu-cores", 1),
            ("player.reset-synth", 1),
        ):
            lib.fluid_settings_setint(self._settings, key.encode(), ivalue)
        lib.fluid_settings_setstr(self._settings, b"player.timing-source", b"sample")
        self._synth = lib.new_fluid_synth(self._settings)
        if not self._synth or lib.fluid_synth_sfload(self._synth, self.soundfont.encode(), 1) < 0:
            self.close()
            raise RenderError(f"FluidSynth could not load soundfont {self.soundfont}")
        self._left = np.zeros(_BLOCK, dtype=np.float32)
        self._right = np.zeros(_BLOCK, dtype=np.float32)

    def _write(self, n: int) -> np.ndarray:
        ptr_l = self._left.ctypes.data_as(ctypes.c_void_p)
        ptr_r = self._right.ctypes.data_as(ctypes.c_void_p)
        if self._lib.fluid_synth_write_float(self._synth, n, ptr_l, 0, 1, ptr_r, 0, 1) != 0:
            raise RenderError("fluid_synth_write_float failed")
        return 0.5 * (self._left[:n] + self._right[:n])

    def render(self, midi: bytes, max_seconds: float, timeout: float | None = None) -> np.ndarray:
        """Play ``midi`` to the end (plus release tail), at most ``max_seconds`` + tail.

        Returns mono float32 (average of the stereo pair). Raises :class:`RenderError` if the
        wall clock passes ``timeout`` seconds.
        """
        lib = self._lib
        deadline = None if timeout is None else time.monotonic() + timeout
        buf = ctypes.create_string_buffer(midi, len(midi))
        player = lib.new_fluid_player(self._synth)
        if not player:
            raise RenderError("new_fluid_player failed")
        chunks: list[np.ndarray] = []
        try:
            if lib.fluid_player_add_mem(player, buf, len(midi)) != 0:
                raise RenderError("FluidSynth rejected the MIDI data")
            lib.fluid_player_play(player)
            limit = int(max_seconds * self.sample_rate)
            done = 0
            while lib.fluid_player_get_status(player) == _FLUID_PLAYER_PLAYING and done < limit:
                if deadline is not None and time.monotonic() > deadline:
                    raise RenderError(f"render timed out after {timeout:.0f} s")
                n = min(_BLOCK, limit - done)
                chunks.append(self._write(n).copy())
                done += n
            lib.fluid_player_stop(player)
            tail = int(TAIL_SECONDS * self.sample_rate)
            while tail > 0 and lib.fluid_synth_get_active_voice_count(self._synth) > 0:
                n = min(_BLOCK, tail)
                chunks.append(self._write(n).copy())
                tail -= n
        finally:
            lib.delete_fluid_player(player)
            lib.fluid_synth_all_sounds_off(self._synth, -1)
            lib.fluid_synth_system_reset(self._synth)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        """Free the synthesiser and settings (the soundfont goes with the synth)."""
        if getattr(self, "_synth", None):
            self._lib.delete_fluid_synth(self._synth)
            self._synth = None
        if getattr(self, "_settings", None):
            self._lib.delete_fluid_settings(self._settings)
            self._settings = None


_SYNTHS: dict[tuple[str, int, float], Synth] = {}


def forget_synths() -> None:
    """Drop cached synths without freeing them: for a forked child, whose copies are not its own."""
    _SYNTHS.clear()


def get_synth(soundfont: str | os.PathLike, sample_rate: int = SAMPLE_RATE, gain: float = GAIN) -> Synth:
    """Per-process cached :class:`Synth` (loading FluidR3 takes ~0.3 s and ~150 MB)."""
    key = (str(soundfont), sample_rate, gain)
    if key not in _SYNTHS:
        _SYNTHS[key] = Synth(soundfont, sample_rate, gain)
    return _SYNTHS[key]


def _render_cli(
    midi: bytes, soundfont: Path, sample_rate: int, gain: float, max_seconds: float, timeout: float
) -> np.ndarray:
    """Render with the ``fluidsynth`` program; kill it on timeout or runaway output size."""
    exe = fluidsynth_cli()
    if exe is None:
        raise RenderError("neither libfluidsynth nor the fluidsynth program is available")
    max_bytes = int((max_seconds + TAIL_SECONDS) * sample_rate * 2 * 4) + 4096
    with tempfile.TemporaryDirectory(prefix="mt-render-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        cmd = [exe, "-ni", "-q", "-r", str(sample_rate), "-R", "0", "-C", "0", "-g", str(gain),
               "-O", "float", "-T", "wav", "-F", str(wav), str(soundfont), str(mid)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RenderError(f"fluidsynth timed out after {timeout:.0f} s")
                if wav.exists() and wav.stat().st_size > max_bytes:
                    raise RenderError("fluidsynth output exceeded the length cap (hung note?)")
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0 or not wav.exists():
            raise RenderError(f"fluidsynth failed ({proc.returncode}): {err.strip()[:200]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RenderError(f"fluidsynth wrote {sr} Hz, asked for {sample_rate}")
    mono = audio.mean(axis=1)
    return mono[: int((max_seconds + TAIL_SECONDS) * sample_rate)]


def render_bytes(
    midi: bytes,
    soundfont: str | os.PathLike | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
    gain: float = GAIN,
    max_seconds: float = 900.0,
    timeout: float = 120.0,
    backend: str = "auto",
) -> np.ndarray:
    """Render MIDI bytes as they are (programs included) to raw mono float32 audio.

    ``backend``: ``"lib"`` (in-process), ``"cli"`` (subprocess) or ``"auto"`` (lib if loadable).
    """
    font = find_soundfont(soundfont)
    if font is None:
        raise RenderError(
            "no General MIDI soundfont found; install fluid-soundfont-gm or set MUSICTRANSLATE_SOUNDFONT"
        )
    if backend not in ("auto", "lib", "cli"):
        raise ValueError(f"backend must be auto, lib or cli, not {backend!r}")
    if backend == "lib" or (backend == "auto" and fluidsynth_lib() is not None):
        return get_synth(font, sample_rate, gain).render(midi, max_seconds, timeout)
    return _render_cli(midi, font, sample_rate, gain, max_seconds, timeout)


@dataclass
class Finished:
    """Loudness bookkeeping of :func:`finish` (dB values relative to full scale)."""

    seconds: float
    gain_db: float
    rms_db: float
    peak_db: float


def _frame_rms(audio: np.ndarray, frame: int) -> np.ndarray:
    n = len(audio) // frame
    if n == 0:
        return np.sqrt(np.mean(np.square(audio), keepdims=True)) if len(audio) else np.zeros(1)
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    return np.sqrt(np.mean(frames * frames, axis=1))


def finish(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    lead_seconds: float = 0.0,
    target_rms_dbfs: float = TARGET_RMS_DBFS,
    peak_dbfs: float = PEAK_DBFS,
    silence_db: float = 60.0,
) -> tuple[np.ndarray, Finished]:
    """Trim silence and normalise loudness without clipping; return the audio and its levels.

    Leading trim is ``lead_seconds`` (the first note's onset from the score), the same for every
    domain, so parallel renders of one piece stay sample-aligned; trailing silence (release
    tails fading below ``silence_db`` under the loudest 10 ms frame) is cut with a short fade.
    Loudness is the RMS over frames within 40 dB of the loudest (sparse folk tunes would read
    quiet otherwise); the gain is then capped so the peak stays at ``peak_dbfs``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[max(0, round(lead_seconds * sample_rate)) :]
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak < SILENT_PEAK:
        raise RenderError(f"render is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)")
    hop = sample_rate // 100
    rms10 = _frame_rms(audio, hop)
    loud = np.nonzero(rms10 > rms10.max() * 10 ** (-silence_db / 20))[0]
    end = min(len(audio), (int(loud[-1]) + 1) * hop + sample_rate // 20)
    audio = audio[:end].copy()
    fade = min(len(audio), sample_rate // 50)
    audio[len(audio) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    rms50 = _frame_rms(audio, sample_rate // 20)
    active = rms50[rms50 > rms50.max() * 10 ** (-40 / 20)]
    rms = float(np.sqrt(np.mean(active**2)))
    peak = float(np.max(np.abs(audio)))
    gain = min(10 ** (target_rms_dbfs / 20) / rms, 10 ** (peak_dbfs / 20) / peak)
    audio *= gain
    info = Finished(
        seconds=round(len(audio) / sample_rate, 3),
        gain_db=round(float(20 * np.log10(gain)), 2),
        rms_db=round(float(20 * np.log10(rms * gain)), 2),
        peak_db=round(float(20 * np.log10(peak * gain)), 2),
    )
    return audio, info


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono FLAC (or WAV, by suffix) atomically: a crash leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    clipped = np.clip(audio, -1.0, 1.0)
    write_atomically(
        path, lambda temp: sf.write(temp, clipped, sample_rate, subtype="PCM_16", format=fmt), replace=True
    )


def link_or_copy(source: Path, link: Path) -> None:
    """``link`` made a hard link to ``source`` (a copy where the filesystem has none): the eval
    sets put a piece's test renders beside it as references at no cost in disk."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    try:
        os.link(source, link)
    except OSError:
        shutil.copyfile(source, link)


def render_midi(
    midi_path: str | os.PathLike,
    program: int,
    out_path: str | os.PathLike | None = None,
    soundfont: str | os.PathLike | None = None,
    timeout: float = 120.0,
    *,
    max_seconds: float = 900.0,
    sample_rate: int = SAMPLE_RATE,
    gain: float = GAIN,
    backend: str = "auto",
    normalise: bool = True,
) -> tuple[np.ndarray, Finished | None]:
    """Render a MIDI file with every channel set to GM ``program``; optionally write it.

    With ``normalise`` the audio is trimmed to start at the first note and loudness-normalised
    (:func:`finish`); ``out_path`` (``.flac`` or ``.wav``) then receives 16-bit mono audio.
    Returns the float audio and its :class:`Finished` levels (None when not normalised).
    """
    data = set_program(Path(midi_path).read_bytes(), program)
    audio = render_bytes(
        data, soundfont, sample_rate=sample_rate, gain=gain, max_seconds=max_seconds,
        timeout=timeout, backend=backend,
    )  # fmt: skip
    info = None
    if normalise:
        score, _ = read_midi(data)
        first = min((n.start for part in score.parts for n in part), default=0)
        audio, info = finish(audio, sample_rate, lead_seconds=score.seconds(first))
    if out_path is not None:
        write_audio(out_path, audio, sample_rate)
    return audio, info


def render_note(
    program: int,
    pitch: int,
    *,
    seconds: float = 3.0,
    release: float = 1.0,
    velocity: int = 100,
    soundfont: str | os.PathLike | None = None,
    sample_rate: int = SAMPLE_RATE,
    backend: str = "auto",
) -> np.ndarray:
    """One note of GM ``program`` at MIDI ``pitch``, held ``seconds``, plus ``release``.

    Returns exactly ``(seconds + release) * sample_rate`` raw samples (not normalised), so notes
    of different instruments and pitches line up for NSynth-style embedding comparisons (NSynth:
    4 s notes released at 3 s).
    """
    data = write_midi(single_note_score(pitch, seconds, velocity), program=program)
    audio = render_bytes(
        data, soundfont, sample_rate=sample_rate, max_seconds=seconds + release + 1.0,
        backend=backend,
    )  # fmt: skip
    n = round((seconds + release) * sample_rate)
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(audio))] = audio[:n]
    return out
