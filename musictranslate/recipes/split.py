"""Grouped, deterministic train/val/test split by piece, so no melody leaks across splits.

Why grouping: many Bach chorales harmonise the same tune as another chorale, folk collections
hold variants of one tune, and cantata movements belong together. A random split by file would
put the same melody in train and test, and a translation "generalising" to the test set would
only be remembering it. So pieces are joined (union-find) when they

* belong to the same work (``WorkSpec.work``: BWV number, O'Neill tune number, Essen signature),
* or their top voices start with the same 16 melodic intervals (transposition-invariant;
  repeated notes are already removed by :func:`.corpus.top_voice`),

and each resulting group is hashed into train/val/test (~80/10/10). The hash depends only on the
group's name, so the assignment is the same on every machine and run; every domain uses the same
assignment, which is what makes ``test/<domain>/`` parallel ground truth.

Measured on the default subset, the opening rule alone leaves ~3% of val/test pieces sharing a
16-interval run with a train piece further in (same chorale tune with another upbeat or passing
notes: BWV 277/278/279, 245.11/393). Grouping on *every* run instead chains the St Matthew
Passion's movements and their tunes into one group of ~90 chorales, which unbalances the split.
So after hashing, a val/test group that shares any 16-interval run with train is moved to
train, and a test group sharing one with val moves to val (repeated until nothing moves): val and
test then hold no melody the model trained on, and test none that guided model selection. That
moves ~50 of ~800 pieces, so the hash aims at 75/12.5/12.5 to land near 80/10/10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

SPLITS = ("train", "val", "test")
INTERVALS = 16
"""Melodic intervals compared for grouping (docs/design.md, "Data")."""

MIN_INTERVALS = 8
"""A top voice with fewer intervals is too short to identify a tune; it groups by work only."""

RATIOS = (0.75, 0.125, 0.125)
"""Hash targets; after leak moves the default subset lands at ~80/10/10 of pieces."""

SALT = "musictranslate-split-v1"
"""Mixed into the hash; change it only to deliberately reshuffle every split."""


def interval_key(melody: Sequence[int], n: int = INTERVALS) -> tuple[int, ...] | None:
    """First ``n`` semitone steps of a pitch sequence, or None when it has < MIN_INTERVALS."""
    steps = tuple(b - a for a, b in pairwise(melody))[:n]
    return steps if len(steps) >= min(n, MIN_INTERVALS) else None


def format_key(key: Sequence[int] | None) -> str:
    """Readable interval key for the manifest, e.g. ``"-2-2+2+2+3"``."""
    return "" if key is None else "".join(f"{k:+d}" for k in key)


def split_of(group: str, ratios: Sequence[float] = RATIOS, salt: str = SALT) -> str:
    """Split of a group name: ``sha1(salt:group)`` mapped into cumulative ``ratios``."""
    digest = hashlib.sha1(f"{salt}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    acc = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        acc += ratio
        if u < acc:
            return name
    return SPLITS[-1]


@dataclass(frozen=True)
class Piece:
    """What the split needs to know about a piece."""

    piece_id: str
    work: str
    melody: tuple[int, ...]


@dataclass(frozen=True)
class Assignment:
    """A piece's group (named after its smallest work key) and split.

    ``moved`` is True when a shared melody moved the group from its hashed split to an earlier
    one (test -> val, val/test -> train).
    """

    group: str
    split: str
    melody_key: str
    moved: bool = False


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign_splits(
    pieces: Iterable[Piece],
    ratios: Sequence[float] = RATIOS,
    n_intervals: int = INTERVALS,
    salt: str = SALT,
    resolve_leaks: bool = True,
) -> dict[str, Assignment]:
    """Group pieces by work and by melody opening, hash groups to splits, then fix leaks.

    Works are the union-find nodes (pieces of one work are together by construction); pieces
    whose opening interval keys match join their works. The group is named after its smallest
    work key, so it does not depend on the order pieces come in. With ``resolve_leaks``, groups
    sharing any ``n_intervals`` run with an earlier split move there (see the module docstring).
    A group is defined within one build: a piece can change split when a larger subset brings in
    a melody twin.
    """
    pieces = list(pieces)
    uf = _UnionFind()
    by_key: dict[tuple[int, ...], str] = {}
    keys: dict[str, tuple[int, ...] | None] = {}
    for p in pieces:
        uf.find(p.work)
        key = interval_key(p.melody, n_intervals)
        keys[p.piece_id] = key
        if key is not None:
            if key in by_key:
                uf.union(by_key[key], p.work)
            else:
                by_key[key] = p.work
    group_of = {p.piece_id: uf.find(p.work) for p in pieces}
    split = {g: split_of(g, ratios, salt) for g in set(group_of.values())}
    hashed = dict(split)
    if resolve_leaks:
        runs = {p.piece_id: windows(p.melody, n_intervals) for p in pieces}
        changed = True
        while changed:
            changed = False
            pools: dict[str, set[tuple[int, ...]]] = {s: set() for s in SPLITS}
            for p in pieces:
                pools[split[group_of[p.piece_id]]] |= runs[p.piece_id]
            for p in pieces:
                g = group_of[p.piece_id]
                for earlier in SPLITS[: SPLITS.index(split[g])]:
                    if runs[p.piece_id] & pools[earlier]:
                        split[g] = earlier
                        changed = True
                        break
    return {
        p.piece_id: Assignment(
            group_of[p.piece_id],
            split[group_of[p.piece_id]],
            format_key(keys[p.piece_id]),
            split[group_of[p.piece_id]] != hashed[group_of[p.piece_id]],
        )
        for p in pieces
    }


def windows(melody: Sequence[int], n: int = INTERVALS) -> set[tuple[int, ...]]:
    """Every run of ``n`` consecutive intervals in a melody (for leak audits)."""
    steps = [b - a for a, b in pairwise(melody)]
    return {tuple(steps[i : i + n]) for i in range(len(steps) - n + 1)}


def leak_audit(
    pieces: Iterable[Piece], assignments: dict[str, Assignment], n: int = INTERVALS
) -> dict[str, int]:
    """Count val/test pieces sharing *any* run of ``n`` intervals with train (and test with val).

    After :func:`assign_splits` with ``resolve_leaks`` the train counts are 0 by construction;
    the number is kept in the manifest so that anyone changing the rule sees what it costs.
    """
    pieces = list(pieces)
    runs = {p.piece_id: windows(p.melody, n) for p in pieces}
    pool: dict[str, set[tuple[int, ...]]] = {s: set() for s in SPLITS}
    for p in pieces:
        pool[assignments[p.piece_id].split] |= runs[p.piece_id]
    counts = {"val": 0, "test": 0, "test_with_val": 0}
    for p in pieces:
        split = assignments[p.piece_id].split
        if split in ("val", "test") and runs[p.piece_id] & pool["train"]:
            counts[split] += 1
        if split == "test" and runs[p.piece_id] & pool["val"]:
            counts["test_with_val"] += 1
    return counts
