"""A minimal Standard MIDI File writer and reader that cannot produce hung notes.

Why not let music21 write the MIDI: measured on this corpus, music21 writes zero-length grace
notes as note-off *before* note-on (14% of files) and puts every part on channel 0. With a
sustained program (organ) such a note never ends and ``fluidsynth -F`` renders forever (a 21 GB
file was seen). So scores are reduced to plain note lists (:class:`NoteScore`) and written here,
clean by construction:

* zero-length and negative-length notes are dropped, overlapping notes of one pitch on one channel
  are trimmed so every note-off closes exactly its own note-on, and at equal ticks note-offs come
  before note-ons (a repeated note re-articulates instead of being cut);
* each part gets its own channel (channel 9, the GM drum channel, is skipped);
* each channel gets a program change at tick 0, so the file can be re-targeted to another GM
  program by patching bytes (:func:`set_program`) without re-exporting the score;
* every track ends with all-notes-off (CC 123) on its channel before end-of-track.

The reader (:func:`read_midi`) exists for tests and for re-using exported MIDI (e.g. whistling a
test-split tune); it understands running status, meta and sysex events.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

TICKS_PER_QUARTER = 480
"""Resolution of files written here; fine enough for tuplets and grace-free ornaments."""

DEFAULT_TEMPO_US = 500_000
"""Microseconds per quarter note at 120 qpm, music21's (and MIDI's) default tempo."""

MELODIC_CHANNELS: tuple[int, ...] = tuple(c for c in range(16) if c != 9)
"""Channels parts are assigned to, in order; 9 is the GM percussion channel."""

ALL_NOTES_OFF = 123
"""Controller number of the Channel Mode message "All Notes Off"."""


@dataclass(frozen=True, order=True)
class Note:
    """One note in ticks; ``end`` is exclusive."""

    start: int
    end: int
    pitch: int
    velocity: int = 90


@dataclass
class NoteScore:
    """Parts of notes plus a tempo map: all the renderer needs from a score.

    ``tempos`` holds ``(tick, microseconds per quarter)`` pairs sorted by tick; an empty list means
    120 qpm throughout.
    """

    parts: list[list[Note]]
    tempos: list[tuple[int, int]] = field(default_factory=list)
    ticks_per_quarter: int = TICKS_PER_QUARTER

    @property
    def end_tick(self) -> int:
        """Tick of the last note-off (0 for an empty score)."""
        return max((n.end for part in self.parts for n in part), default=0)

    def seconds(self, tick: int) -> float:
        """Convert an absolute tick to seconds through the tempo map."""
        tempos = self.tempos or [(0, DEFAULT_TEMPO_US)]
        if tempos[0][0] > 0:
            tempos = [(0, DEFAULT_TEMPO_US), *tempos]
        total = 0.0
        for i, (t0, us) in enumerate(tempos):
            t1 = tempos[i + 1][0] if i + 1 < len(tempos) else None
            if t1 is not None and tick > t1:
                total += (t1 - t0) * us
                continue
            total += (tick - t0) * us
            break
        return total / 1e6 / self.ticks_per_quarter

    def tick_at(self, seconds: float) -> int:
        """Inverse of :meth:`seconds` (rounded down); used to cap a piece's length."""
        lo, hi = 0, max(self.end_tick, 1)
        while self.seconds(hi) < seconds:
            hi *= 2
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.seconds(mid) <= seconds:
                lo = mid
            else:
                hi = mid - 1
        return lo

    @property
    def duration(self) -> float:
        """Seconds from tick 0 to the last note-off."""
        return self.seconds(self.end_tick)

    def cropped(self, max_seconds: float) -> NoteScore:
        """Copy without notes starting after ``max_seconds``; notes crossing it are shortened."""
        limit = self.tick_at(max_seconds)
        parts = [
            [Note(n.start, min(n.end, limit), n.pitch, n.velocity) for n in part if n.start < limit]
            for part in self.parts
        ]
        return NoteScore(parts, list(self.tempos), self.ticks_per_quarter)


def clean_notes(notes: Sequence[Note]) -> list[Note]:
    """Drop the notes that would hang or glitch a synthesiser, keep the rest in start order.

    Zero/negative length notes go (music21's grace notes: their note-off would precede their
    note-on). Out-of-range pitches go; velocities are clamped to 1..127. Two notes of one pitch
    that overlap (voice crossings in one part, doubled chord tones) are merged or trimmed so each
    note-off belongs to its own note.
    """
    kept = [
        Note(n.start, n.end, n.pitch, min(127, max(1, int(n.velocity))))
        for n in notes
        if n.end > n.start and 0 <= n.pitch <= 127 and n.start >= 0
    ]
    kept.sort(key=lambda n: (n.pitch, n.start, -n.end))
    out: list[Note] = []
    for n in kept:
        if out and out[-1].pitch == n.pitch and n.start < out[-1].end:
            prev = out[-1]
            if n.start == prev.start:  # same attack twice: one note, the longer one
                continue
            out[-1] = Note(prev.start, n.start, prev.pitch, prev.velocity)
        out.append(n)
    out.sort(key=lambda n: (n.start, n.pitch))
    return out


def channel_for_part(index: int) -> int:
    """Channel of the ``index``-th part: 0..8, 10..15, wrapping after 15 parts."""
    return MELODIC_CHANNELS[index % len(MELODIC_CHANNELS)]


def _vlq(value: int) -> bytes:
    """Encode a MIDI variable-length quantity."""
    if value < 0:
        raise ValueError("negative delta time")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def _track(events: list[tuple[int, int, bytes]], end_tick: int = 0) -> bytes:
    """Serialise ``(tick, order, message)`` events; end-of-track at ``end_tick`` or after."""
    events.sort(key=lambda e: (e[0], e[1]))
    out = bytearray()
    now = 0
    for tick, _, msg in events:
        out += _vlq(tick - now) + msg
        now = tick
    out += _vlq(max(0, end_tick - now)) + b"\xff\x2f\x00"
    return _chunk(b"MTrk", bytes(out))


def write_midi(
    score: NoteScore,
    program: int = 0,
    names: Sequence[str] | None = None,
    tail_ticks: int = TICKS_PER_QUARTER,
) -> bytes:
    """Serialise ``score`` as a format-1 SMF with every channel on GM ``program`` (0-127).

    Track 0 carries the tempo map; track i+1 carries part i on :func:`channel_for_part` (i). The
    notes are passed through :func:`clean_notes` first, so whatever the caller hands in, the
    file has no hung notes. End-of-track comes ``tail_ticks`` after the last note-off because
    ``fluidsynth -F`` stops rendering when the file ends and would cut the release tails.
    """
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be 0..127, got {program}")
    tempos = score.tempos or [(0, DEFAULT_TEMPO_US)]
    conductor = [(t, 0, b"\xff\x51\x03" + us.to_bytes(3, "big")) for t, us in tempos]
    last = score.end_tick
    tracks = [_track(conductor, last + tail_ticks)]
    for i, part in enumerate(score.parts):
        ch = channel_for_part(i)
        notes = clean_notes(part)
        events: list[tuple[int, int, bytes]] = []
        if names is not None and i < len(names):
            name = names[i].encode("latin-1", "replace")[:64]
            events.append((0, 0, b"\xff\x03" + _vlq(len(name)) + name))
        events.append((0, 1, bytes([0xC0 | ch, program])))
        for n in notes:
            events.append((n.start, 3, bytes([0x90 | ch, n.pitch, n.velocity])))
            events.append((n.end, 2, bytes([0x80 | ch, n.pitch, 0])))  # offs before ons
        end = max((n.end for n in notes), default=0)
        events.append((end, 4, bytes([0xB0 | ch, ALL_NOTES_OFF, 0])))
        tracks.append(_track(events, last + tail_ticks))
    header = struct.pack(">HHH", 1, len(tracks), score.ticks_per_quarter)
    return _chunk(b"MThd", header) + b"".join(tracks)


@dataclass(frozen=True)
class MidiEvent:
    """One parsed event; ``offset`` is where its first data byte sits in the file."""

    track: int
    tick: int
    status: int
    data: bytes
    offset: int


def _read_vlq(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        byte = buf[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise ValueError("variable-length quantity longer than 4 bytes")


def iter_events(buf: bytes) -> Iterator[MidiEvent]:
    """Yield every event of an SMF with absolute ticks (running status resolved)."""
    if buf[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File (no MThd header)")
    (hlen,) = struct.unpack(">I", buf[4:8])
    pos = 8 + hlen
    track = 0
    while pos + 8 <= len(buf):
        kind = buf[pos : pos + 4]
        (length,) = struct.unpack(">I", buf[pos + 4 : pos + 8])
        pos += 8
        end = min(pos + length, len(buf))
        if kind != b"MTrk":
            pos = end
            continue
        tick, status = 0, 0
        while pos < end:
            delta, pos = _read_vlq(buf, pos)
            tick += delta
            if buf[pos] & 0x80:
                status = buf[pos]
                pos += 1
            elif status == 0:
                raise ValueError("running status without a previous status byte")
            if status == 0xFF:
                mtype = buf[pos]
                mlen, dpos = _read_vlq(buf, pos + 1)
                yield MidiEvent(track, tick, status, bytes([mtype]) + buf[dpos : dpos + mlen], pos)
                pos = dpos + mlen
                status = 0
            elif status in (0xF0, 0xF7):
                slen, dpos = _read_vlq(buf, pos)
                yield MidiEvent(track, tick, status, buf[dpos : dpos + slen], dpos)
                pos = dpos + slen
                status = 0
            else:
                size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
                yield MidiEvent(track, tick, status, buf[pos : pos + size], pos)
                pos += size
        pos = end
        track += 1


def set_program(buf: bytes, program: int) -> bytes:
    """Return ``buf`` with every program change (except on drum channel 9) set to ``program``.

    This is how one exported file is rendered as piano, organ, flute...: only the program bytes
    change, so all domains get exactly the same notes and timing.
    """
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be 0..127, got {program}")
    out = bytearray(buf)
    found = False
    for ev in iter_events(buf):
        if ev.status & 0xF0 == 0xC0 and ev.status & 0x0F != 9:
            out[ev.offset] = program
            found = True
    if not found:
        raise ValueError("MIDI file has no program change to patch; write it with write_midi")
    return bytes(out)


def read_midi(buf: bytes) -> tuple[NoteScore, list[MidiEvent]]:
    """Parse notes (one part per track and channel) and the tempo map; also return all events.

    Note-on with velocity 0 counts as note-off. A note-on still open at the end of its track is
    closed there (a player would hang on it; :func:`write_midi` never writes one).
    """
    (tpq,) = struct.unpack(">H", buf[12:14])
    events = list(iter_events(buf))
    tempos: list[tuple[int, int]] = []
    open_notes: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    parts: dict[tuple[int, int], list[Note]] = {}
    track_end: dict[int, int] = {}
    for ev in events:
        track_end[ev.track] = ev.tick
        kind, ch = ev.status & 0xF0, ev.status & 0x0F
        if ev.status == 0xFF and ev.data[:1] == b"\x51":
            tempos.append((ev.tick, int.from_bytes(ev.data[1:4], "big")))
        elif kind == 0x90 and ev.data[1] > 0:
            open_notes.setdefault((ev.track, ch, ev.data[0]), []).append((ev.tick, ev.data[1]))
        elif kind == 0x80 or (kind == 0x90 and ev.data[1] == 0):
            stack = open_notes.get((ev.track, ch, ev.data[0]))
            if stack:
                start, vel = stack.pop(0)
                parts.setdefault((ev.track, ch), []).append(Note(start, ev.tick, ev.data[0], vel))
    for (track, ch, pitch), stack in open_notes.items():
        for start, vel in stack:
            parts.setdefault((track, ch), []).append(Note(start, track_end.get(track, start), pitch, vel))
    ordered = [sorted(parts[key]) for key in sorted(parts)]
    return NoteScore(ordered, sorted(tempos), tpq), events


def single_note_score(pitch: int, seconds: float, velocity: int = 100) -> NoteScore:
    """One note of ``pitch`` held for ``seconds`` at 120 qpm (for NSynth-style note renders)."""
    ticks = max(1, round(seconds * 2 * TICKS_PER_QUARTER))
    return NoteScore([[Note(0, ticks, pitch, velocity)]], [(0, DEFAULT_TEMPO_US)])
