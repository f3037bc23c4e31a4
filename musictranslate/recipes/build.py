"""Build the training data: corpus -> MIDI -> grouped split -> one FLAC per piece per domain.

Usage::

    python -m musictranslate.recipes.build --out data [--subset default]
        [--domains piano,harpsichord,organ,strings,choir,flute] [--jobs 2] [--quiet]

Layout written under ``--out``::

    midi/<piece_id>.mid                 clean MIDI (program 0), the source of every render
    train/<domain>/<piece_id>.flac      a dataset root: one folder per domain (training input)
    val/<domain>/<piece_id>.flac
    test/<domain>/<piece_id>.flac       parallel ground truth: same file names in every domain
    eval_whistle/, eval_register/, eval_unseen/
                                        small evaluation sets with their notes (:mod:`.eval_sets`)
    manifest.json                       pieces, splits, groups, domains, hours, failures, timings

Why it is shaped like this: the split is by piece (grouped by melody, :mod:`.split`) and shared
by all domains, so ``test/`` holds the same notes in every instrument and a translation can be
scored against the real target render. A piece that fails in any domain is removed from all of
them, keeping that parallelism exact. Re-running skips renders that already exist with the same
settings (``--force`` re-renders) and deletes renders of pieces no longer in the build, so a
folder never mixes two builds' splits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..safe_write import write_text
from .corpus import MAX_PIECE_SECONDS, SUBSETS, ExportResult, WorkSpec, export_work, select_works
from .render import (
    GAIN,
    GM_PROGRAMS,
    PEAK_DBFS,
    SAMPLE_RATE,
    TARGET_RMS_DBFS,
    find_soundfont,
    fluidsynth_cli,
    fluidsynth_lib,
    forget_synths,
    render_midi,
)
from .split import RATIOS, SPLITS, Piece, assign_splits, leak_audit, windows

DEFAULT_DOMAINS = ("piano", "harpsichord", "organ", "strings", "choir", "flute")
RENDER_TIMEOUT = 120.0
"""Wall-clock limit per render; a 10-minute piece renders in ~2 s in-process."""

FORMAT_VERSION = 1

T = TypeVar("T")
R = TypeVar("R")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (the soundfont: a domain is only reproducible with the same one)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _export(args: tuple[WorkSpec, str, float]) -> ExportResult:
    spec, midi_dir, max_seconds = args
    return export_work(spec, midi_dir, max_seconds)


def _render(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: render one piece in one domain to FLAC; failures come back as data."""
    out = {"piece": task["piece"], "domain": task["domain"], "error": None}
    t0 = time.perf_counter()
    try:
        _, info = render_midi(
            task["midi"],
            task["program"],
            task["path"],
            task["soundfont"],
            timeout=task["timeout"],
            max_seconds=task["max_seconds"],
            backend=task["backend"],
        )
        assert info is not None
        out.update(seconds=info.seconds, gain_db=info.gain_db, peak_db=info.peak_db)
    except Exception as exc:  # one bad render costs one piece, not the build
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["wall"] = time.perf_counter() - t0
    return out


def _pmap(fn: Callable[[T], R], items: Sequence[T], jobs: int, chunksize: int = 1) -> Iterator[R]:
    """Unordered parallel map (inline with one job, which keeps tracebacks simple)."""
    if jobs <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(jobs, initializer=forget_synths) as pool:
        yield from pool.imap_unordered(fn, items, chunksize=chunksize)


def _progress(items: Iterable[T], total: int, label: str, quiet: bool) -> Iterator[T]:
    if quiet:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _render_settings(soundfont: Path, sha: str, max_seconds: float) -> dict[str, Any]:
    return {
        "sample_rate": SAMPLE_RATE,
        "gain": GAIN,
        "reverb": False,
        "chorus": False,
        "target_rms_dbfs": TARGET_RMS_DBFS,
        "peak_dbfs": PEAK_DBFS,
        "max_seconds": max_seconds,
        "soundfont": str(soundfont),
        "soundfont_sha256": sha,
        "format": "FLAC PCM_16 mono",
    }


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(
    out: Path,
    subset: str = "default",
    domains: Sequence[str] = DEFAULT_DOMAINS,
    jobs: int = 2,
    quiet: bool = False,
    soundfont: str | None = None,
    force: bool = False,
    backend: str = "auto",
    max_seconds: float = MAX_PIECE_SECONDS,
    timeout: float = RENDER_TIMEOUT,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the whole recipe; returns the manifest it wrote to ``out/manifest.json``."""
    t_start = time.perf_counter()
    say: Callable[[str], None] = (lambda _m: None) if quiet else print
    unknown = [d for d in domains if d not in GM_PROGRAMS]
    if unknown:
        raise SystemExit(f"unknown domain(s) {unknown}; known: {sorted(GM_PROGRAMS)}")
    font = find_soundfont(soundfont)
    if font is None:
        raise SystemExit("no GM soundfont: apt-get install fluid-soundfont-gm, or --soundfont F")
    if fluidsynth_lib() is None and fluidsynth_cli() is None:
        raise SystemExit("FluidSynth is not installed: apt-get install fluidsynth")
    out.mkdir(parents=True, exist_ok=True)
    sf_sha = sha256_file(font)
    settings = _render_settings(font, sf_sha, max_seconds)
    old_manifest = out / "manifest.json"
    if not force and old_manifest.exists():
        try:
            old = json.loads(old_manifest.read_text())
            force = old.get("render_settings") != settings
            if force:
                say("render settings changed since the last build: re-rendering everything")
        except (OSError, ValueError):
            force = True

    # 1. export ---------------------------------------------------------------------------
    specs = select_works(subset)
    say(f"exporting {len(specs)} works ({subset}) to MIDI with {jobs} process(es)")
    t0 = time.perf_counter()
    midi_dir = out / "midi"
    args = [(s, str(midi_dir), max_seconds) for s in specs]
    results = list(_progress(_pmap(_export, args, jobs, chunksize=4), len(args), "export", quiet))
    results.sort(key=lambda r: r.spec.piece_id)
    t_export = time.perf_counter() - t0
    exported = [r for r in results if r.error is None]
    export_failures = {r.spec.piece_id: r.error for r in results if r.error is not None}
    keep_midi = {f"{r.spec.piece_id}.mid" for r in exported}
    for stale in midi_dir.glob("*.mid"):
        if stale.name not in keep_midi:
            stale.unlink()

    # 2. split ----------------------------------------------------------------------------
    pieces = [Piece(r.spec.piece_id, r.spec.work, tuple(r.melody)) for r in exported]
    assignment = assign_splits(pieces)
    audit = leak_audit(pieces, assignment)

    # 3. render ---------------------------------------------------------------------------
    tasks, reused = [], {}
    for r in exported:
        split = assignment[r.spec.piece_id].split
        for d in domains:
            path = out / split / d / f"{r.spec.piece_id}.flac"
            if path.exists() and not force:
                import soundfile as sf

                reused[(r.spec.piece_id, d)] = round(sf.info(str(path)).duration, 3)
                continue
            tasks.append({
                "piece": r.spec.piece_id, "domain": d, "program": GM_PROGRAMS[d],
                "midi": r.midi, "path": str(path), "soundfont": str(font), "timeout": timeout,
                "max_seconds": max_seconds + 5.0, "backend": backend,
            })  # fmt: skip
    say(
        f"rendering {len(tasks)} files ({len(exported)} pieces x {len(domains)} domains, "
        f"{len(reused)} already there)"
    )
    t0 = time.perf_counter()
    rendered: dict[tuple[str, str], float] = dict(reused)
    render_failures: dict[str, dict[str, str]] = {}
    peaks: list[float] = []
    for res in _progress(_pmap(_render, tasks, jobs, chunksize=2), len(tasks), "render", quiet):
        if res["error"]:
            render_failures.setdefault(res["piece"], {})[res["domain"]] = res["error"]
        else:
            rendered[(res["piece"], res["domain"])] = res["seconds"]
            peaks.append(res["peak_db"])
    t_render = time.perf_counter() - t0

    # 4. keep only pieces rendered in every domain; delete anything else in the domain folders
    complete = [
        r for r in exported if r.spec.piece_id not in render_failures
        and all((r.spec.piece_id, d) in rendered for d in domains)
    ]  # fmt: skip
    expected = {
        out / assignment[r.spec.piece_id].split / d / f"{r.spec.piece_id}.flac"
        for r in complete
        for d in domains
    }
    removed = 0
    for split in SPLITS:
        for d in domains:
            for f in (out / split / d).glob("*.flac") if (out / split / d).is_dir() else ():
                if f not in expected:
                    f.unlink()
                    removed += 1
    others = sorted(
        {p.name for s in SPLITS if (out / s).is_dir() for p in (out / s).iterdir() if p.is_dir()}
        - set(domains)
    )

    # 5. manifest -------------------------------------------------------------------------
    hours = {d: dict.fromkeys(SPLITS, 0.0) for d in domains}
    files = {d: dict.fromkeys(SPLITS, 0) for d in domains}
    piece_entries: dict[str, Any] = {}
    for r in complete:
        a = assignment[r.spec.piece_id]
        for d in domains:
            hours[d][a.split] += rendered[(r.spec.piece_id, d)] / 3600
            files[d][a.split] += 1
        piece_entries[r.spec.piece_id] = {
            "source": r.spec.source,
            "number": r.spec.number,
            "collection": r.spec.collection,
            "title": r.spec.title,
            "work": r.spec.work,
            "group": a.group,
            "split": a.split,
            "melody_key": a.melody_key,
            "moved_for_shared_melody": a.moved,
            "duration": r.seconds,
            "parts": r.parts,
            "notes": r.notes,
            "dropped_notes": r.dropped_notes,
            "cropped": r.cropped,
            "rendered_seconds": {d: rendered[(r.spec.piece_id, d)] for d in domains},
        }
    groups: dict[str, set[str]] = {}
    for pid, a in assignment.items():
        groups.setdefault(a.group, set()).add(pid)
    from .eval_sets import write_eval_sets
    from .whistle import EVAL_FOLDER, MELODY

    whistle_melody = [p for _, p in MELODY if p > 0]
    train_windows: set[tuple[int, ...]] = set()
    for p in pieces:
        if assignment[p.piece_id].split == "train":
            train_windows |= windows(p.melody, 8)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m musictranslate.recipes.build", *(argv or [])]),
        "subset": subset,
        "subset_counts": SUBSETS.get(subset),
        "sample_rate": SAMPLE_RATE,
        "layout": "<split>/<domain>/<piece_id>.flac; midi/<piece_id>.mid",
        "render_settings": settings,
        "max_peak_dbfs_this_run": max(peaks, default=None),
        "domains": {
            d: {
                "gm_program": GM_PROGRAMS[d],
                "soundfont": str(font),
                "soundfont_sha256": sf_sha,
                "hours": {s: round(h, 4) for s, h in hours[d].items()},
                "files": files[d],
            }
            for d in domains
        },
        "hours": {d: {s: round(h, 4) for s, h in hours[d].items()} for d in domains},
        "split_rule": {
            "method": (
                "union of same work and same first 16 top-voice intervals; sha1(group) -> "
                "hash ratios; groups sharing any 16-interval run with an earlier split moved there"
            ),
            "hash_ratios": list(RATIOS),
            "groups": len(groups),
            "groups_moved": len({a.group for a in assignment.values() if a.moved}),
            "pieces_moved": sum(a.moved for a in assignment.values()),
            "groups_with_several_works": sum(
                len({piece_entries.get(p, {}).get("work") for p in g}) > 1 for g in groups.values()
            ),
            "leak_audit_16_interval_runs": audit,
            "whistle_melody_8_interval_runs_in_train": len(windows(whistle_melody, 8) & train_windows),
        },
        "counts": {
            "works_selected": len(specs),
            "exported": len(exported),
            "export_failures": len(export_failures),
            "render_failures": sum(len(v) for v in render_failures.values()),
            "pieces_dropped_for_render_failure": len(render_failures),
            "pieces": len(complete),
            "pieces_per_split": {s: sum(e["split"] == s for e in piece_entries.values()) for s in SPLITS},
            "cropped_pieces": sum(r.cropped for r in exported),
            "pieces_with_dropped_notes": sum(r.dropped_notes > 0 for r in exported),
            "renders_reused": len(reused),
            "stale_files_removed": removed,
        },
        "failures": {"export": export_failures, "render": render_failures},
        "timings_s": {
            "export": round(t_export, 1),
            "render": round(t_render, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
        "disk_bytes": {s: _dir_bytes(out / s) for s in (*SPLITS, "midi") if (out / s).is_dir()},
        "pieces": piece_entries,
    }
    manifest["eval_sets"] = write_eval_sets(out, piece_entries, domains, GM_PROGRAMS)
    manifest["eval_whistle"] = {"folder": EVAL_FOLDER, **manifest["eval_sets"][EVAL_FOLDER]}
    write_text(out / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    if others:
        say(f"note: {out} also holds domain folders not in this build: {', '.join(others)}")
    return manifest


def print_summary(manifest: dict[str, Any], quiet: bool = False) -> None:
    """Rich table of hours per domain per split, then counts, timings and disk use."""
    c, t = manifest["counts"], manifest["timings_s"]
    gib = sum(manifest["disk_bytes"].values()) / 2**30
    line = (
        f"{c['pieces']} pieces ({c['pieces_per_split']}), export failures {c['export_failures']}, "
        f"render failures {c['render_failures']}, {t['total']:.0f} s "
        f"(export {t['export']:.0f} s, render {t['render']:.0f} s), {gib:.2f} GiB"
    )
    if quiet:
        print(line)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hours per domain per split")
    table.add_column("domain")
    table.add_column("program", justify="right")
    for s in SPLITS:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for d, info in manifest["domains"].items():
        h = info["hours"]
        table.add_row(d, str(info["gm_program"]), *(f"{h[s]:.2f}" for s in SPLITS), f"{sum(h.values()):.2f}")
    console = Console()
    console.print(table)
    console.print(line)
    rule = manifest["split_rule"]
    console.print(
        f"groups: {rule['groups']} ({rule['groups_with_several_works']} join several works, "
        f"{rule['groups_moved']} moved to an earlier split for a shared melody); "
        f"pieces sharing a 16-interval run: {rule['leak_audit_16_interval_runs']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m musictranslate.recipes.build``."""
    parser = argparse.ArgumentParser(
        prog="python -m musictranslate.recipes.build",
        description="Render the music21 corpus into parallel instrument domains (16 kHz FLAC).",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder [data]")
    parser.add_argument("--subset", default="default", choices=sorted(SUBSETS), help="works to export")
    parser.add_argument("--domains", default=",".join(DEFAULT_DOMAINS), help="comma-separated domain names")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, one summary line")
    parser.add_argument("--soundfont", help="GM .sf2 (default: FluidR3_GM from fluid-soundfont-gm)")
    parser.add_argument("--force", action="store_true", help="re-render files that exist")
    parser.add_argument("--backend", default="auto", choices=("auto", "lib", "cli"))
    parser.add_argument("--max-seconds", type=float, default=MAX_PIECE_SECONDS, help="crop pieces")
    parser.add_argument("--timeout", type=float, default=RENDER_TIMEOUT, help="per render, s")
    args = parser.parse_args(argv)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    manifest = build(
        args.out, args.subset, domains, args.jobs, args.quiet, args.soundfont, args.force,
        args.backend, args.max_seconds, args.timeout,
        argv=list(argv) if argv is not None else sys.argv[1:],
    )  # fmt: skip
    print_summary(manifest, args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
