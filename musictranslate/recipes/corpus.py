"""music21 corpus -> clean MIDI: choose works, reduce each score to notes, write the file.

Why a chosen subset: exporting the whole corpus (~4,500 files, ~131 h) takes ~20 min on 2 cores
and is dominated by Palestrina; the recipe wants variety quickly. The default subset is every Bach
chorale in the corpus (four-part, polyphonic) plus a few hundred monophonic folk tunes from
O'Neill's 1850 and the Essen collection, so the model also hears single melodic lines like a
whistle. Works are ranked by a hash of their id within each collection, so a larger subset is a
superset of a smaller one and every run picks the same works.

Why works and not files: the split must keep movements of one work (cantata BWV 248's chorales)
and variants of one tune (Essen's ``Q0155``, ``Q0155A``...; O'Neill's tune 732 transcribed twice)
together, so each :class:`WorkSpec` carries a ``work`` key that :mod:`.split` never separates.

Errors are caught per work (some abc tunes and repeat expansions raise) and returned as data, so
one bad tune costs one piece, not the build.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..safe_write import write_atomically
from .midi import DEFAULT_TEMPO_US, TICKS_PER_QUARTER, Note, NoteScore, clean_notes, write_midi

MAX_PIECE_SECONDS = 600.0
"""Length cap per piece at score tempo; longer pieces are cropped (render time and file size)."""

MIN_PIECE_SECONDS = 2.0
"""Shorter pieces carry too little audio to cut a training segment from; they count as failed."""

MELODY_KEEP = 1000
"""Top-voice pitches kept per piece: :mod:`.split` keys groups on the first 17 (16 intervals)
and checks every 16-interval run for melodies shared with the training split."""

ESSEN_SKIP = ("test0.abc", "test1.abc", "testd.abc", "teste.abc")
"""Essen files that are test fixtures duplicating tunes found elsewhere."""

SUBSETS: dict[str, dict[str, int | None]] = {
    "tiny": {"bach": 6, "oneills1850": 3, "essenFolksong": 3},
    "chorales": {"bach": None},
    "default": {"bach": None, "oneills1850": 200, "essenFolksong": 200},
    "large": {"bach": None, "oneills1850": 700, "essenFolksong": 700},
}
"""Works per collection for each ``--subset`` (None: all of them)."""


@dataclass(frozen=True)
class WorkSpec:
    """One score to export: where it lives in the corpus and which work it belongs to."""

    piece_id: str
    source: str
    number: int | None
    work: str
    collection: str
    title: str = ""


@dataclass
class ExportResult:
    """What exporting one work produced; ``error`` is set (and ``midi`` None) on failure."""

    spec: WorkSpec
    midi: str | None = None
    error: str | None = None
    seconds: float = 0.0
    parts: int = 0
    notes: int = 0
    dropped_notes: int = 0
    cropped: bool = False
    melody: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (for the manifest and for passing between processes)."""
        out = asdict(self)
        out["spec"] = asdict(self.spec)
        return out


def corpus_root() -> Path:
    """Folder of the corpus that ships inside the installed music21 package."""
    import music21

    return Path(music21.__file__).parent / "corpus"


def _rank(piece_id: str) -> str:
    return hashlib.sha1(piece_id.encode()).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


BACH_FORMATS = (".mxl", ".musicxml", ".xml", ".krn")
"""Score formats in ``bach/``, most preferred first (three chorales exist as .mxl and .krn)."""


def bach_works(root: Path) -> list[WorkSpec]:
    """Every score file in ``bach/``: the chorales (and their variants) plus the odd prelude.

    One file per name (a chorale stored as both .mxl and .krn would otherwise be exported twice
    under one id). The work key is the BWV number, so movements of one cantata or oratorio stay
    together.
    """
    best: dict[str, Path] = {}
    for path in sorted((root / "bach").iterdir()):
        if path.suffix not in BACH_FORMATS or not path.is_file():
            continue
        have = best.get(path.stem)
        if have is None or BACH_FORMATS.index(path.suffix) < BACH_FORMATS.index(have.suffix):
            best[path.stem] = path
    specs = []
    for stem, path in sorted(best.items()):
        bwv = re.match(r"(bwv\d+)", stem)
        work = f"bach/{bwv.group(1) if bwv else stem}"
        specs.append(WorkSpec(f"bach-{_safe(stem)}", f"bach/{path.name}", None, work, "bach", stem))
    return specs


_ESSEN_SIG = re.compile(r"^([A-Z]{1,2}\d{3,4})[A-Z]*$")


def abc_tunes(path: Path) -> list[tuple[int, str, str]]:
    """List ``(X number, title, first N: field)`` of an abc file without parsing music.

    Reading the headers directly is ~1000x faster than letting music21 parse the whole opus.
    """
    tunes: list[tuple[int, str, str]] = []
    number: int | None = None
    title, note = "", ""
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("X:"):
            if number is not None:
                tunes.append((number, title, note))
            digits = re.match(r"\s*(\d+)", line[2:])
            number = int(digits.group(1)) if digits else None
            title, note = "", ""
        elif number is not None and line.startswith("T:") and not title:
            title = line[2:].strip()
        elif number is not None and line.startswith("N:") and not note:
            note = line[2:].strip()
    if number is not None:
        tunes.append((number, title, note))
    return tunes


def folk_works(root: Path, collection: str) -> list[WorkSpec]:
    """Every tune of an abc collection (``oneills1850`` or ``essenFolksong``).

    Work keys: O'Neill numbers tunes 1..1850 across files (two files transcribe 732-758 twice),
    so the X number is the work. Essen signatures like ``Q0155A`` name variants of ``Q0155``;
    stripping the letter suffix keeps the variants together.
    """
    specs = []
    for path in sorted((root / collection).glob("*.abc")):
        if collection == "essenFolksong" and path.name in ESSEN_SKIP:
            continue
        for number, title, note in abc_tunes(path):
            piece_id = f"{collection[:6].lower()}-{_safe(path.stem)}-{number:04d}"
            if collection == "oneills1850":
                work = f"oneills1850/{number}"
            else:
                sig = _ESSEN_SIG.match(note)
                work = f"essen/{sig.group(1)}" if sig else f"essen/{path.stem}/{number}"
            specs.append(WorkSpec(piece_id, f"{collection}/{path.name}", number, work, collection, title))
    return specs


def select_works(subset: str | Mapping[str, int | None], root: Path | None = None) -> list[WorkSpec]:
    """Works of a named subset (see :data:`SUBSETS`) or of an explicit ``{collection: count}``.

    Within a collection, works are taken in order of ``sha1(piece_id)``: a deterministic, evenly
    spread pick whose larger counts are supersets of smaller ones.
    """
    counts = SUBSETS[subset] if isinstance(subset, str) else subset
    root = root or corpus_root()
    chosen: list[WorkSpec] = []
    for collection, count in counts.items():
        specs = bach_works(root) if collection == "bach" else folk_works(root, collection)
        specs.sort(key=lambda s: _rank(s.piece_id))
        chosen.extend(specs if count is None else specs[:count])
    chosen.sort(key=lambda s: s.piece_id)
    return chosen


def _tempo_map(score: Any) -> list[tuple[int, int]]:
    """``(tick, us per quarter)`` from music21's metronome-mark boundaries (120 qpm if none)."""
    tempos: dict[int, int] = {}
    for start, _end, mark in score.metronomeMarkBoundaries():
        bpm = mark.getQuarterBPM() if mark is not None else None
        if not bpm or bpm <= 0:
            continue
        tempos[round(float(start) * TICKS_PER_QUARTER)] = round(60e6 / bpm)
    if 0 not in tempos:
        tempos[0] = DEFAULT_TEMPO_US
    return sorted(tempos.items())


def _tie_type(el: Any) -> str | None:
    tie = getattr(el, "tie", None)
    return tie.type if tie is not None else None


def score_to_notes(score: Any) -> tuple[NoteScore, int, list[str]]:
    """Reduce a music21 score to a :class:`NoteScore`; also the dropped-note count, part names.

    Dropped notes are zero-length (grace) notes and duplicated unisons merged by
    :func:`.midi.clean_notes`; parts without pitched notes are left out (and so are their names).

    Tied notes are merged (here rather than with ``stripTies``, which deep-copies the score and
    was half the export time), chords expand to their pitches, chord symbols (text harmony in
    abc tunes) and unpitched notes are ignored, and grace notes (zero length) are dropped: they
    are the notes music21 would write with the note-off before the note-on.
    """
    from music21 import harmony

    parts_in = list(score.parts) or [score]
    parts: list[list[Note]] = []
    names: list[str] = []
    total = 0
    for part in parts_in:
        notes: list[Note] = []
        tied: dict[int, int] = {}  # MIDI pitch -> index in notes of the note a tie continues
        for el in part.flatten().notes:
            if isinstance(el, harmony.Harmony):
                continue
            start = round(float(el.offset) * TICKS_PER_QUARTER)
            grace = el.duration.isGrace
            length = 0 if grace else round(float(el.duration.quarterLength) * TICKS_PER_QUARTER)
            velocity = el.volume.velocity if el.volume.velocity else 90
            members = list(el.notes) if hasattr(el, "notes") and el.isChord else [el]
            for m in members:
                pitch = getattr(m, "pitch", None)
                if pitch is None:
                    continue
                key = int(pitch.midi)
                tie = _tie_type(m) or (_tie_type(el) if el.isChord else None)
                prev = tied.pop(key, None)
                if tie in ("continue", "stop") and prev is not None and not grace:
                    n = notes[prev]
                    notes[prev] = Note(n.start, max(n.end, start + length), key, n.velocity)
                    if tie == "continue":
                        tied[key] = prev
                    continue
                total += 1
                notes.append(Note(start, start + length, key, int(velocity)))
                if tie in ("start", "continue") and not grace:
                    tied[key] = len(notes) - 1
        cleaned = clean_notes(notes)
        if cleaned:
            parts.append(cleaned)
            names.append(str(getattr(part, "partName", "") or ""))
    kept = sum(len(p) for p in parts)
    return NoteScore(parts, _tempo_map(score)), total - kept, names


def top_voice(score: NoteScore, limit: int = MELODY_KEEP) -> list[int]:
    """Melody of the first part: highest pitch per onset, consecutive repeats removed.

    Repeats are removed so that a variant that splits a note in two (common between chorale
    harmonisations and folk variants) still has the same interval sequence.
    """
    if not score.parts:
        return []
    by_onset: dict[int, int] = {}
    for n in score.parts[0]:
        by_onset[n.start] = max(by_onset.get(n.start, 0), n.pitch)
    melody: list[int] = []
    for tick in sorted(by_onset):
        if not melody or melody[-1] != by_onset[tick]:
            melody.append(by_onset[tick])
            if len(melody) >= limit:
                break
    return melody


def export_work(spec: WorkSpec, midi_dir: str | Path, max_seconds: float = MAX_PIECE_SECONDS) -> ExportResult:
    """Parse one work, write ``midi_dir/<piece_id>.mid`` (program 0), report what happened.

    Never raises for a bad score: the exception text goes into ``ExportResult.error``.
    """
    result = ExportResult(spec)
    try:
        from music21 import corpus

        if spec.number is not None:
            score = corpus.parse(spec.source, number=spec.number)
        else:
            score = corpus.parse(spec.source)
        if hasattr(score, "scores") and not hasattr(score, "parts"):  # an Opus slipped through
            score = score.scores[0]
        notes, dropped, names = score_to_notes(score)
        if not notes.parts:
            raise ValueError("score has no pitched notes")
        if notes.duration > max_seconds:
            notes = notes.cropped(max_seconds)
            result.cropped = True
        if notes.duration < MIN_PIECE_SECONDS:
            raise ValueError(f"too short ({notes.duration:.1f} s)")
        path = Path(midi_dir) / f"{spec.piece_id}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = write_midi(notes, program=0, names=names)
        write_atomically(path, lambda temp: Path(temp).write_bytes(data), replace=True)
        result.midi = str(path)
        result.seconds = round(notes.duration, 3)
        result.parts = len(notes.parts)
        result.notes = sum(len(p) for p in notes.parts)
        result.dropped_notes = dropped
        result.melody = top_voice(notes)
    except Exception as exc:  # any music21 failure costs one work, not the build
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return result
