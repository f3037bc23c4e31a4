"""``musictranslate train``, ``add-domain`` and ``distill``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import ModelOption, ModelsOption, QuietOption, app, stderr, user_errors
from .numbers import finite, seed_range

StepsOption = Annotated[
    int, typer.Option("--steps", help="Total training steps (one batch of one domain each).")
]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Segments per batch (paper: 16).")]
SegmentOption = Annotated[
    float,
    typer.Option(
        "--segment", callback=finite(0.0, above=True), help="Seconds per training segment (paper: 1.0)."
    ),
]
LrOption = Annotated[
    float, typer.Option("--lr", callback=finite(0.0, above=True), help="Adam learning rate (paper: 1e-3).")
]
CheckpointOption = Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")]
ValBatchesOption = Annotated[
    int,
    typer.Option(
        "--val-batches", help="Validation batches per domain at each checkpoint (their mean loss is saved)."
    ),
]
SeedOption = Annotated[
    int,
    typer.Option("--seed", callback=seed_range, help="Seed for the split, initialisation and batches."),
]
LoaderWorkersOption = Annotated[
    int,
    typer.Option(
        "--loader-workers",
        help="Processes that load and augment training audio (0: in the training process).",
    ),
]
Bf16Option = Annotated[bool, typer.Option("--bf16", help="bf16 autocast (faster on CPUs with AVX512-BF16).")]
NoAugOption = Annotated[bool, typer.Option("--no-augment", help="Turn off the pitch-shift augmentation.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda.")]
DecoderNoiseOption = Annotated[
    float,
    typer.Option(
        "--decoder-noise",
        help="Noise (standard deviation, 0-1 of the companded scale) added to the past samples the "
        "decoder is given, so it learns to take the notes from the latent; 0: the paper's exact "
        "teacher forcing.",
    ),
]
WarmupOption = Annotated[
    Optional[int],
    typer.Option(
        "--warmup",
        help="Steps over which the learning rate ramps up from zero (default: 300 where trained "
        "weights meet a fresh optimiser, as with --init or --refine; else 0).",
    ),
]


@contextmanager
def _training_progress(quiet: bool, label: str = "train") -> Iterator:
    """A progress bar showing step, per-domain losses (or the latent error of ``distill``),
    confusion accuracy, samples/s and ETA."""
    import sys

    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=stderr,
    ) as bar:
        task = bar.add_task(label, total=None, info="")
        losses: dict[str, float] = {}

        def update(step: int, total: int, stats: dict) -> None:
            if "domain" in stats:
                losses[stats["domain"]] = stats["reconstruction"]
            for key in ("latent_error", "val_error"):
                if key in stats:
                    losses[key.replace("_", " ")] = stats[key]
            parts = [f"{d} {v:.3f}" for d, v in losses.items()]
            if "confusion_acc" in stats:
                parts.append(f"conf acc {stats['confusion_acc']:.2f}")
            parts.append(f"{stats['samples_per_second']:,.0f} samples/s")
            bar.update(task, completed=step, total=total, info=" | ".join(parts))

        yield update


def _options(**values):
    from ..data import Augmentation
    from ..train import TrainOptions

    augment = values.pop("augment")
    return TrainOptions(**values, augmentation=Augmentation(enabled=augment))


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="Dataset root: one sub-folder of audio per domain.")],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Model name (written to the first user registry folder) or folder."
        ),
    ],
    models: ModelsOption = None,
    val: Annotated[
        Optional[Path],
        typer.Option(
            "--val",
            help="Validation folder laid out like DATA (default: a hashed tenth of DATA's files).",
        ),
    ] = None,
    preset: Annotated[str, typer.Option("--preset", help="Architecture: paper, small or tiny.")] = "small",
    steps: StepsOption = 10_000,
    batch_size: BatchOption = 16,
    segment: SegmentOption = 1.0,
    lr: LrOption = 1e-3,
    confusion_weight: Annotated[
        float, typer.Option("--lambda", callback=finite(0.0), help="Domain-confusion weight.")
    ] = 1e-2,
    checkpoint_every: CheckpointOption = 200,
    val_batches: ValBatchesOption = 4,
    seed: SeedOption = 0,
    workers: LoaderWorkersOption = 1,
    bf16: Bf16Option = False,
    no_augment: NoAugOption = False,
    device: DeviceOption = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint of --output.")
    ] = False,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help="Start from this trained model's weights (name or folder): its encoder, its decoders "
            "of the domains DATA shares and, with the same domains, its confusion net.",
        ),
    ] = None,
    warmup: WarmupOption = None,
    parallel: Annotated[
        float,
        typer.Option(
            "--parallel",
            help="Share of segments (0-1) the encoder reads from another domain's rendering of the "
            "same notes, for data with the same file names in every domain (`make data`); 0: the "
            "paper's autoencoding only.",
        ),
    ] = 0.0,
    decoder_noise: DecoderNoiseOption = 0.0,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Train a new model in place of the model in --output.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model: shared encoder, one decoder per domain, domain confusion."""
    from ..catalog import model_output_path
    from ..config import PRESETS
    from ..registry import load_model
    from ..train import train

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    with user_errors():
        options = _options(
            preset=preset,
            steps=steps,
            batch_size=batch_size,
            segment_seconds=segment,
            lr=lr,
            confusion_weight=confusion_weight,
            checkpoint_every=checkpoint_every,
            val_batches=val_batches,
            seed=seed,
            workers=workers,
            bf16=bf16,
            augment=not no_augment,
            device=device,
            warmup_steps=warmup,
            parallel=parallel,
            decoder_noise=decoder_noise,
        )
        with _training_progress(quiet) as progress:
            out_folder = model_output_path(output, models)
            start = load_model(init, models) if init is not None else None
            result = train(
                data,
                out_folder,
                options,
                resume=resume,
                on_step=progress,
                val_data=val,
                init=start,
                force=force,
            )
    if not quiet and result.main_process:
        losses = ", ".join(f"{d} {v:.3f}" for d, v in result.losses.items())
        stderr.print(f"wrote {result.model} after {result.steps} steps ({losses})", highlight=False)


@app.command("add-domain")
def add_domain_command(
    data: Annotated[Path, typer.Argument(help="Folder of audio of the new domain.")],
    name: Annotated[str, typer.Option("--name", help="Domain name (default: the folder's name).")] = "",
    model: ModelOption = "default",
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            help="Write the extended model here (a name in the first user registry folder, or a "
            "folder) and leave --model as it is (default: extend --model itself).",
        ),
    ] = None,
    models: ModelsOption = None,
    steps: StepsOption = 2_000,
    batch_size: BatchOption = 16,
    segment: SegmentOption = 1.0,
    lr: LrOption = 1e-3,
    checkpoint_every: CheckpointOption = 200,
    val_batches: ValBatchesOption = 4,
    seed: SeedOption = 0,
    workers: LoaderWorkersOption = 1,
    bf16: Bf16Option = False,
    no_augment: NoAugOption = False,
    device: DeviceOption = "auto",
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="Train the model's existing decoder for this domain further (its --steps more), "
            "encoder frozen, instead of adding a new one.",
        ),
    ] = False,
    warmup: WarmupOption = None,
    decoder_noise: DecoderNoiseOption = 0.0,
    quiet: QuietOption = False,
) -> None:
    """Add a domain to a trained model: a new decoder trained with the encoder frozen.

    With --refine, improve a domain the model already has the same way.
    """
    from ..catalog import model_output_path
    from ..registry import copy_model, load_model, writable_model
    from ..train import add_domain

    with user_errors():
        loaded = load_model(model, models)
        if output is None:
            loaded = writable_model(loaded, models)
        else:
            loaded = copy_model(loaded, model_output_path(output, models))
        options = _options(
            steps=steps,
            batch_size=batch_size,
            segment_seconds=segment,
            lr=lr,
            checkpoint_every=checkpoint_every,
            val_batches=val_batches,
            seed=seed,
            workers=workers,
            bf16=bf16,
            augment=not no_augment,
            device=device,
            warmup_steps=warmup,
            decoder_noise=decoder_noise,
        )
        domain = name or data.resolve().name
        with _training_progress(quiet) as progress:
            result = add_domain(loaded, data, domain, options, on_step=progress, refine=refine)
    if not quiet:
        done = "refined" if refine else "added"
        stderr.print(f"{done} domain {domain!r} of {result.model}: {result.steps} steps", highlight=False)


@app.command("distill")
def distill_command(
    data: Annotated[Path, typer.Argument(help="Folder of domain folders of audio (as train takes).")],
    model: ModelOption = "default",
    models: ModelsOption = None,
    steps: StepsOption = 400,
    batch_size: BatchOption = 8,
    lr: LrOption = 3e-4,
    checkpoint_every: CheckpointOption = 25,
    val_batches: ValBatchesOption = 4,
    seed: SeedOption = 0,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start again from the model's encoder, not its low-latency one."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Teach a model a low-latency (causal) encoder for `live --low-latency`.

    The model's own encoder is the teacher; the new one is written into the model folder at
    every checkpoint, so a stopped run keeps what it learnt. Run again to train it further.
    """
    from ..distill import DistillOptions, distill
    from ..registry import load_model, writable_model

    with user_errors():
        loaded = writable_model(load_model(model, models), models)
        options = DistillOptions(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            checkpoint_every=checkpoint_every,
            val_batches=val_batches,
            seed=seed,
            fresh=fresh,
        )
        with _training_progress(quiet, "distill") as progress:
            result = distill(loaded, data, options, on_step=progress)
    if not quiet:
        stderr.print(
            f"low-latency encoder of {loaded.name}: {result.steps} steps, held-out latent error "
            f"{result.start_val_error:.3f} -> {result.val_error:.3f} (0: the encoder's own latent)",
            highlight=False,
        )
