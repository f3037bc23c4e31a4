"""Carry training data to a lent GPU machine: pack a subset as Opus, unpack it there as FLAC.

Why: the device tool takes at most 64 MiB (model and wheels included) and the machine has no
network, while `make data` renders ~2.4 GB of FLAC. Opus at ~32 kbps carries ~3 h of audio in
~43 MB; the default model's validation cross-entropy moved by at most 0.04 nats on Opus-coded
audio against the FLAC originals. Files keep their names (as .flac after unpacking), so the
hashed train/val/test split puts each in the same split as on this machine: packing only
hashed-train files (and a few hashed-val ones for validation) keeps test pieces out of training.

    python examples/device/subset.py pack data/train .gpudata --mb-per-domain 6.2
    python examples/device/subset.py pack data/train .gpudata --mb-per-domain 42 --domains piano
    python examples/device/subset.py unpack .gpudata /tmp/subset      # on the device
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from musictranslate.data import split_of  # noqa: E402

OPUS_LEVEL = 0.9
"""libsndfile's compression level for Opus: 0.9 is about 32 kbps at 16 kHz mono."""


def encode(job: tuple[Path, Path]) -> tuple[int, float]:
    """One file to Opus; returns its size in bytes and its length in seconds."""
    source, target = job
    audio, rate = sf.read(source, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL)
    return target.stat().st_size, len(audio) / rate


def decode(job: tuple[Path, Path]) -> float:
    """One Opus file back to 16-bit FLAC; returns its length in seconds."""
    source, target = job
    audio, rate = sf.read(source, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio.clip(-1, 1), rate, subtype="PCM_16")
    return len(audio) / rate


def subset_jobs(data: Path, out: Path, domain: str, val_files: int) -> tuple[list, list]:
    """(source, target) pairs of ``val_files`` hashed-val files and of every hashed-train file,
    in a seeded random order that is the same in every domain (a parallel dataset)."""
    names = sorted(p.name for p in (data / domain).glob("*.flac"))
    np.random.default_rng(1).shuffle(names)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for name in names:
        job = (data / domain / name, out / domain / (Path(name).stem + ".ogg"))
        parts[split_of(Path(domain) / name, 0)].append(job)
    return parts["val"][:val_files], parts["train"]


def pack(data: Path, out: Path, budget_mb: float, domains: list[str], val_files: int, workers: int) -> None:
    """Per domain, a few hashed-val files, then hashed-train files until ``budget_mb`` of Opus."""
    with ProcessPoolExecutor(workers) as pool:
        for domain in domains:
            val, train = subset_jobs(data, out, domain, val_files)
            list(pool.map(encode, val))
            used, seconds, taken = 0, 0.0, 0
            while used < budget_mb * 1e6 and taken < len(train):
                for size, length in pool.map(encode, train[taken : taken + 8]):
                    used, seconds = used + size, seconds + length
                taken += 8
            print(
                f"{domain}: {len(val)} val + {min(taken, len(train))} train files, "
                f"{seconds / 60:.1f} min of training audio in {used / 1e6:.1f} MB",
                flush=True,
            )


def unpack(packed: Path, out: Path, workers: int) -> None:
    jobs = [(p, out / p.parent.name / (p.stem + ".flac")) for p in sorted(packed.glob("*/*.ogg"))]
    with ProcessPoolExecutor(workers) as pool:
        seconds = sum(pool.map(decode, jobs))
    print(f"unpacked {len(jobs)} files, {seconds / 3600:.2f} h, into {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="FLAC dataset root -> Opus subset")
    packing.add_argument("data", type=Path)
    packing.add_argument("out", type=Path)
    packing.add_argument(
        "--mb-per-domain", type=float, required=True, help="Opus megabytes of training files"
    )
    packing.add_argument("--domains", default="", help="comma-separated (default: every folder)")
    packing.add_argument("--val-files", type=int, default=4)
    unpacking = verbs.add_parser("unpack", help="Opus subset -> FLAC dataset root")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.verb == "pack":
        domains = (
            args.domains.split(",")
            if args.domains
            else sorted(p.name for p in args.data.iterdir() if p.is_dir())
        )
        pack(args.data, args.out, args.mb_per_domain, domains, args.val_files, args.workers)
    else:
        unpack(args.packed, args.out, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
