"""Evaluation sets beyond the test split: the whistle, out of the training register, unseen instruments.

Usage::

    python -m musictranslate.recipes.eval_sets --data data      # after the build (make eval-data)

Each is a small parallel set (10-12 s clips, a handful each, so a report over all six targets
stays minutes long) with the notes beside it, laid out for ``evaluate report --data``::

    eval_whistle/whistle/<piece>.wav     test-split folk tunes whistled by the synthesiser, moved
                                         into a whistler's register by whole octaves
                                         (transpositions.json says how far), beside links to
                                         their test renders in every domain
    eval_register/<domain>/<piece>_<k>.flac
                                         test pieces transposed by k = -12, -5, +5, +12 semitones
                                         (MIDI transposition, exact) and rendered in every domain:
                                         does a translation hold outside the register it trained on?
    eval_unseen/<instrument>/<piece>.flac
                                         monophonic test tunes played by GM programs no domain
                                         trains on (clarinet, trumpet, ocarina, nylon guitar,
                                         voice), beside links to their test renders
    eval_*/midi/<piece>.mid              the notes each set's references play (the report's truth)

Why these: the headline numbers must say how a model generalises to what users feed it, and a
translation that only works on FluidR3's six training programs in their training register is not
the product (issue 20: whistles came back a whole tone flat, unseen instruments scored 0.25).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..safe_write import write_atomically, write_text
from .midi import Note, NoteScore, read_midi, write_midi
from .render import find_soundfont, link_or_copy, render_midi
from .whistle import EVAL_FOLDER, EVAL_SECONDS, write_eval_set

REGISTER_FOLDER = "eval_register"
REGISTER_SHIFTS = (-12, -5, 5, 12)
"""Semitones each register piece is moved by: one piece per shift, a fifth to an octave out."""

UNSEEN_FOLDER = "eval_unseen"
UNSEEN_PROGRAMS: dict[str, int] = {
    "clarinet": 71,
    "trumpet": 56,
    "ocarina": 79,
    "nylon_guitar": 24,
    "voice": 53,
}
"""Test-only sources: GM programs (0-based) that no training domain uses, one tune each."""

TRANSPOSITIONS = "transpositions.json"
"""``{domain: {piece: semitones}}`` for renders that do not play their score's pitches (read by
``evaluate report``)."""


def _evenly(items: Sequence[str], count: int) -> list[str]:
    """``count`` items evenly spaced through ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _transposed(score: NoteScore, semitones: int, seconds: float) -> NoteScore:
    """The first ``seconds`` of ``score`` moved by ``semitones`` (notes out of MIDI range dropped)."""
    cropped = score.cropped(seconds)
    parts = [
        [
            Note(n.start, n.end, n.pitch + semitones, n.velocity)
            for n in part
            if 0 <= n.pitch + semitones < 128
        ]
        for part in cropped.parts
    ]
    return NoteScore(parts, cropped.tempos, cropped.ticks_per_quarter)


def _render_set(
    data: Path, folder: str, renders: list[tuple[str, NoteScore, dict[str, int]]], soundfont: Path
) -> None:
    """Write each ``(name, score, {domain: program})``: ``folder/midi/<name>.mid`` and one FLAC
    per domain, rendered like the training data (trimmed to the first note, loudness-normalised)."""
    root = data / folder
    for name, score, programs in renders:
        midi = root / "midi" / f"{name}.mid"
        midi.parent.mkdir(parents=True, exist_ok=True)
        contents = write_midi(score)
        write_atomically(midi, lambda temp, data=contents: Path(temp).write_bytes(data), replace=True)
        for domain, program in programs.items():
            render_midi(
                midi, program, root / domain / f"{name}.flac", soundfont, max_seconds=EVAL_SECONDS + 5
            )


def write_register_set(
    data: Path, test_pieces: Sequence[str], programs: dict[str, int], soundfont: Path
) -> list[str]:
    """``eval_register``: one test piece per shift in :data:`REGISTER_SHIFTS`, in every domain."""
    chosen = _evenly(sorted(test_pieces), len(REGISTER_SHIFTS))
    renders = []
    for piece, shift in zip(chosen, REGISTER_SHIFTS, strict=False):
        score = read_midi((data / "midi" / f"{piece}.mid").read_bytes())[0]
        renders.append((f"{piece}_{shift:+d}", _transposed(score, shift, EVAL_SECONDS), programs))
    _render_set(data, REGISTER_FOLDER, renders, soundfont)
    return [name for name, _, _ in renders]


def write_unseen_set(
    data: Path, monophonic_test_pieces: Sequence[str], domains: Sequence[str], soundfont: Path
) -> dict[str, str]:
    """``eval_unseen``: each instrument of :data:`UNSEEN_PROGRAMS` plays one monophonic test tune,
    beside links to the tune's test renders. Returns ``{instrument: piece}``."""
    chosen = _evenly(sorted(monophonic_test_pieces), len(UNSEEN_PROGRAMS))
    played = dict(zip(UNSEEN_PROGRAMS, chosen, strict=False))
    renders = []
    for instrument, piece in played.items():
        score = read_midi((data / "midi" / f"{piece}.mid").read_bytes())[0]
        renders.append(
            (piece, _transposed(score, 0, EVAL_SECONDS), {instrument: UNSEEN_PROGRAMS[instrument]})
        )
        for domain in domains:
            link_or_copy(
                data / "test" / domain / f"{piece}.flac", data / UNSEEN_FOLDER / domain / f"{piece}.flac"
            )
    _render_set(data, UNSEEN_FOLDER, renders, soundfont)
    return played


def write_eval_sets(
    data: Path, pieces: dict[str, dict[str, Any]], domains: Sequence[str], programs: dict[str, int]
) -> dict[str, Any]:
    """All three sets from the build's ``pieces`` (its manifest entries); returns what they hold.

    Each set's folder is emptied first, so it never mixes two builds' pieces."""
    soundfont = find_soundfont()
    if soundfont is None:
        raise SystemExit("no GM soundfont: apt-get install fluid-soundfont-gm")
    for folder in (REGISTER_FOLDER, UNSEEN_FOLDER):
        shutil.rmtree(data / folder, ignore_errors=True)
    test = {p: e for p, e in pieces.items() if e["split"] == "test"}
    long_enough = [p for p, e in test.items() if e["duration"] >= EVAL_SECONDS - 1]
    whistled, shifts = write_eval_set(data, {p: e["duration"] for p, e in test.items()}, domains)
    write_text(data / EVAL_FOLDER / TRANSPOSITIONS, json.dumps({"whistle": shifts}, indent=1) + "\n")
    monophonic = [p for p in long_enough if test[p]["parts"] == 1]
    return {
        "seconds": EVAL_SECONDS,
        EVAL_FOLDER: {"pieces": whistled, "transpositions": shifts},
        REGISTER_FOLDER: {
            "pieces": write_register_set(data, long_enough, {d: programs[d] for d in domains}, soundfont)
        },
        UNSEEN_FOLDER: {"instruments": write_unseen_set(data, monophonic, domains, soundfont)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m musictranslate.recipes.eval_sets`` (``make eval-data``)."""
    from .render import GM_PROGRAMS

    parser = argparse.ArgumentParser(
        prog="python -m musictranslate.recipes.eval_sets", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="a folder `make data` wrote [data]")
    args = parser.parse_args(argv)
    try:
        manifest = json.loads((args.data / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        print(
            f"{args.data / 'manifest.json'}: cannot read it ({exc}); run `make data` first", file=sys.stderr
        )
        return 1
    domains = list(manifest["domains"])
    sets = write_eval_sets(args.data, manifest["pieces"], domains, GM_PROGRAMS)
    print(json.dumps(sets, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
