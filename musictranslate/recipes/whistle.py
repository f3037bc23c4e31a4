"""A parametric whistle synthesiser in pure numpy: an unseen source domain for examples and tests.

Why synthesise a whistle: the paper translates whistling into instruments, but no whistle is in
the training domains, and FluidR3's GM 78 whistle is a near-pure sine with slight vibrato. This
model adds what makes a human whistle recognisable, with every parameter exposed:

* one sine per note (plus a faint 2nd harmonic), phase-continuous across the melody;
* vibrato ~5.5 Hz, +-40 cents, fading in after the attack, with slightly irregular rate;
* onset pitch scoops: each note starts ~80 cents flat and glides up within ~60 ms;
* band-passed breath noise ~26 dB below the tone, following the tone's envelope, a bit louder
  at attacks;
* the melody transposed into 600-2500 Hz (a whistler's range).

No FluidSynth, no soundfont: ``python examples/make_whistle.py`` regenerates
``examples/whistle.wav`` anywhere. The default melody (:data:`MELODY`) is written out by hand for
this project, so it is in no training split; :func:`melody_from_score` whistles any exported MIDI
(e.g. a test-split folk tune, whose instrument renders are then the parallel reference).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tuning import hz_to_midi, midi_to_hz
from .midi import NoteScore, read_midi
from .render import link_or_copy

SAMPLE_RATE = 16_000

MELODY: tuple[tuple[float, int], ...] = (
    (0.5, 74), (0.5, 76), (0.5, 78), (0.5, 81),
    (1.0, 83), (0.5, 81), (0.5, 78),
    (0.5, 79), (0.5, 78), (1.0, 76),
    (1.5, 81), (0.5, 0),
    (0.5, 78), (0.5, 79), (0.5, 81), (0.5, 86),
    (1.0, 85), (0.5, 83), (0.5, 81),
    (0.5, 79), (0.5, 76), (0.5, 78), (0.5, 76),
    (2.0, 74),
)  # fmt: skip
"""An original 8-bar tune in D as ``(beats, MIDI pitch)``; pitch 0 is a rest. 16 beats = 8 s."""

MELODY_BPM = 120.0


@dataclass(frozen=True)
class WhistleParams:
    """Knobs of the whistle model; the defaults follow docs/design.md, "Data"."""

    sample_rate: int = SAMPLE_RATE
    vibrato_hz: float = 5.5
    vibrato_cents: float = 40.0
    vibrato_delay: float = 0.12
    scoop_cents: float = 80.0
    scoop_seconds: float = 0.06
    attack: float = 0.025
    release: float = 0.045
    gap: float = 0.03
    harmonic_db: float = -32.0
    noise_db: float = -26.0
    noise_band: tuple[float, float] = (1500.0, 6000.0)
    low_hz: float = 600.0
    high_hz: float = 2500.0
    peak_dbfs: float = -3.0
    tail: float = 0.3
    seed: int = 7


def fit_transposition(pitches: Sequence[float], low_hz: float, high_hz: float, step: int = 1) -> int:
    """Shift, a multiple of ``step`` semitones, putting every pitch, vibrato and scoop included,
    inside [low, high] Hz.

    Among the shifts that fit, the one centring the melody in the range (log-frequency) wins, so
    the whistle sits in a comfortable register; if none fits (a melody wider than the range),
    the multiple of ``step`` nearest the centring shift is returned anyway. ``step=12`` keeps the
    pitch classes, so the whistle plays the notes its parallel renders play.
    """
    lo, hi = hz_to_midi(low_hz) + 1.0, hz_to_midi(high_hz) - 0.5  # scoop below, vibrato above
    pmin, pmax = min(pitches), max(pitches)
    centre = (lo + hi) / 2 - (pmin + pmax) / 2
    fitting = [s for s in range(-60, 61, step) if pmin + s >= lo and pmax + s <= hi]
    if not fitting:
        return round(centre / step) * step
    return min(fitting, key=lambda s: abs(s - centre))


def melody_notes(
    melody: Sequence[tuple[float, int]] = MELODY, bpm: float = MELODY_BPM
) -> list[tuple[float, float, float]]:
    """``(beats, pitch)`` list (pitch 0 = rest) -> ``(onset s, duration s, pitch)`` notes."""
    notes, t = [], 0.0
    beat = 60.0 / bpm
    for beats, pitch in melody:
        if pitch > 0:
            notes.append((t, beats * beat, float(pitch)))
        t += beats * beat
    return notes


def melody_from_score(score: NoteScore, max_seconds: float = 8.0) -> list[tuple[float, float, float]]:
    """Monophonic top line of a score's first part as ``(onset s, duration s, pitch)`` notes.

    Chords keep their highest pitch and overlapping notes are cut at the next onset, because a
    whistler plays one note at a time.
    """
    if not score.parts:
        return []
    top: dict[int, tuple[int, int]] = {}
    for n in score.parts[0]:
        if n.start not in top or n.pitch > top[n.start][1]:
            top[n.start] = (n.end, n.pitch)
    starts = sorted(top)
    notes = []
    for i, start in enumerate(starts):
        end, pitch = top[start]
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        t0, t1 = score.seconds(start), score.seconds(end)
        if t0 >= max_seconds:
            break
        notes.append((t0, min(t1, max_seconds) - t0, float(pitch)))
    if notes:
        first = notes[0][0]
        notes = [(t - first, d, p) for t, d, p in notes]
    return notes


def _bandpass_noise(n: int, sr: int, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """White noise band-limited by an FFT mask with cosine skirts (no scipy needed)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    lo, hi = band
    skirt = 0.25
    mask = np.clip((freqs - lo * (1 - skirt)) / (lo * skirt), 0, 1) * np.clip(
        (hi * (1 + skirt) - freqs) / (hi * skirt), 0, 1
    )
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    noise = np.fft.irfft(spec * mask, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def synthesize(
    notes: Sequence[tuple[float, float, float]],
    params: WhistleParams = WhistleParams(),
    transpose: int | None = None,
) -> np.ndarray:
    """Whistle ``(onset s, duration s, MIDI pitch)`` notes; returns float32 mono at peak_dbfs.

    ``transpose`` (semitones) defaults to :func:`fit_transposition` into the whistle range.
    Deterministic for a given ``params.seed``.
    """
    if not notes:
        raise ValueError("no notes to whistle")
    sr = params.sample_rate
    rng = np.random.default_rng(params.seed)
    shift = (
        fit_transposition([p for _, _, p in notes], params.low_hz, params.high_hz)
        if transpose is None
        else transpose
    )
    total = int((max(t + d for t, d, _ in notes) + params.tail) * sr)
    pitch = np.full(total, np.nan)
    amp = np.zeros(total)
    onset_burst = np.zeros(total)
    for onset, dur, p in notes:
        s = int(onset * sr)
        sounding = max(dur - params.gap, 2 * params.attack)
        e = min(total, s + int(sounding * sr))
        if e <= s:
            continue
        t = np.arange(e - s) / sr
        scoop = -params.scoop_cents * np.exp(-t / (params.scoop_seconds / 3.0))
        depth = params.vibrato_cents * np.clip((t - params.vibrato_delay) / 0.15, 0, 1)
        rate = params.vibrato_hz * (1 + 0.04 * rng.standard_normal())
        wobble = 1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
        vib = depth * wobble * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
        pitch[s:e] = p + shift + (scoop + vib) / 100.0
        env = np.ones(e - s)
        a = min(len(env), int(params.attack * sr))
        r = min(len(env) - a, int(params.release * sr))
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / max(a, 1))
        if r > 0:
            env[len(env) - r :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(r) / r)
        env *= 10 ** ((-3.0 * t / max(sounding, 1e-3)) / 20)  # breath runs out a little
        env *= 1 + 0.1 * depth / max(params.vibrato_cents, 1e-9) * np.sin(2 * np.pi * rate * t)
        amp[s:e] = np.maximum(amp[s:e], env * (0.85 + 0.15 * rng.random()))
        onset_burst[s:e] = np.maximum(onset_burst[s:e], np.exp(-t / 0.04))
    # hold the last pitch through gaps so the phase integrator never sees NaN
    idx = np.where(np.isnan(pitch), 0, np.arange(total))
    np.maximum.accumulate(idx, out=idx)
    pitch = pitch[idx]
    pitch[np.isnan(pitch)] = notes[0][2] + shift
    phase = 2 * np.pi * np.cumsum(midi_to_hz(pitch)) / sr
    harmonic = 10 ** (params.harmonic_db / 20)
    tone = (np.sin(phase) + harmonic * np.sin(2 * phase)) * amp
    tone_rms = np.sqrt(np.mean(tone[amp > 0.5] ** 2)) if np.any(amp > 0.5) else 1.0
    noise = _bandpass_noise(total, sr, params.noise_band, rng)
    noise *= tone_rms * 10 ** (params.noise_db / 20) * (amp + 0.6 * onset_burst * (amp > 0))
    audio = tone + noise
    audio *= 10 ** (params.peak_dbfs / 20) / np.max(np.abs(audio))
    return audio.astype(np.float32)


EVAL_FOLDER = "eval_whistle"
EVAL_PIECES = 8
EVAL_SECONDS = 12.0


def write_eval_set(
    data: Path,
    test_pieces: dict[str, float],
    domains: Sequence[str],
    count: int = EVAL_PIECES,
    seconds: float = EVAL_SECONDS,
) -> tuple[list[str], dict[str, int]]:
    """``data/eval_whistle``: whistled test-split folk tunes beside their instrument renders.

    The paper's headline is whistle -> instrument, and scoring it needs a whistle whose notes
    are known in every domain. ``test_pieces`` maps test-split piece ids to their durations; the
    first ``count`` Essen tunes (monophonic) by id that last 11-60 s are whistled from their MIDI,
    moved by whole octaves into the whistle's range (so they keep the renders' pitch classes),
    and their test renders are linked beside them, so ``evaluate report --data
    data/eval_whistle --sources whistle`` compares parallel files. Returns the piece ids and the
    semitones each whistle sits above its score.
    """
    chosen = sorted(p for p, d in test_pieces.items() if p.startswith("essenf") and 11 <= d <= 60)[:count]
    folder = data / EVAL_FOLDER
    params = WhistleParams()
    shifts = {}
    for piece in chosen:
        notes = melody_from_score(read_midi((data / "midi" / f"{piece}.mid").read_bytes())[0], seconds)
        shifts[piece] = fit_transposition([p for _, _, p in notes], params.low_hz, params.high_hz, step=12)
        write_wav(folder / "whistle" / f"{piece}.wav", synthesize(notes, params, shifts[piece]))
        for domain in domains:
            link_or_copy(data / "test" / domain / f"{piece}.flac", folder / domain / f"{piece}.flac")
    return chosen, shifts


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV (what examples/ ships: readable by anything)."""
    import soundfile as sf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16", format="WAV")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m musictranslate.recipes.whistle [--out F] [--midi M] [--seconds S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/whistle.wav", help="output WAV path")
    parser.add_argument("--midi", help="whistle the top voice of this MIDI instead of MELODY")
    parser.add_argument("--seconds", type=float, default=8.0, help="length cap with --midi")
    parser.add_argument("--seed", type=int, default=WhistleParams.seed)
    args = parser.parse_args(argv)
    if args.midi:
        notes = melody_from_score(read_midi(Path(args.midi).read_bytes())[0], args.seconds)
    else:
        notes = melody_notes()
    audio = synthesize(notes, WhistleParams(seed=args.seed))
    write_wav(args.out, audio)
    print(f"wrote {args.out}: {len(audio) / SAMPLE_RATE:.2f} s, {len(notes)} notes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
