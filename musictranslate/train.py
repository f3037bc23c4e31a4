"""Training runs: ``train`` (all domains, the paper's recipe) and ``add_domain`` (one decoder,
the encoder frozen), their options, where they start from, and the run loop they share.

The step itself -- the confusion net's, then the autoencoder's -- is ``train_step``; the resume
state is ``checkpoint``; several processes under ``torchrun`` are ``distributed``.

A run keeps two things beside the model folder ``models/NAME``: ``models/NAME.train/checkpoint``
(everything needed to resume) and ``models/NAME.train/log.jsonl`` (one line per logged step).
Batches are a pure function of ``(seed, step, rank)``, so a resumed run continues exactly where
an uninterrupted one would be.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, run_folder, save_checkpoint
from .config import PRESETS, SAMPLE_RATE, ModelConfig, preset
from .data import (
    Augmentation,
    DataError,
    DomainBatches,
    open_sources,
    scan_domains,
    split_files,
    training_level_db,
)
from .distributed import Distributed
from .errors import DivergedError, TrainingError, UsageError, first_line
from .names import DOMAIN_RULE, is_domain_name
from .registry import (
    Model,
    add_decoder,
    claim_model_folder,
    load_model,
    recorded_path,
    refined_decoders,
    save_model,
)
from .runtime import resolve_device
from .safe_write import claim_folder, restore_interrupted, write_text
from .train_step import Trainer

_FLAGS = {"segment_seconds": "--segment", "confusion_weight": "--lambda", "workers": "--loader-workers"}
"""Command-line names of the options whose flag is not their field name."""


@dataclass(frozen=True)
class TrainOptions:
    """Every training hyper-parameter; saved with each checkpoint and checked on resume."""

    preset: str = "small"
    steps: int = 10_000
    batch_size: int = 16
    segment_seconds: float = 1.0
    lr: float = 1e-3
    lr_decay: float = 0.98
    lr_decay_every: int = 10_000
    confusion_weight: float = 1e-2
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    val_batches: int = 4
    """Per domain, at each checkpoint: one batch reads a decoder's loss too noisily to compare
    checkpoints (the default model's card has the figures); each costs about a second on 2 cores
    at the small preset's sizes."""
    log_every: int = 10
    seed: int = 0
    workers: int = 1
    bf16: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)
    device: str = "auto"
    warmup_steps: int | None = None  # None: WARMUP_STEPS when trained weights meet a fresh optimiser
    parallel: float = 0.0
    """Share of segments encoded from another domain's rendering of the same notes (data of
    parallel renders: same file names in every domain); 0 trains exactly as the paper."""
    decoder_noise: float = 0.0
    """Standard deviation of Gaussian noise added to the past samples the decoder is given in
    training (companded mu-law units, full scale 2); 0 is exact teacher forcing, as the paper."""

    def __post_init__(self) -> None:
        """Refuse values that would otherwise fail deep in the loop with a traceback (a zero
        modulus, an empty batch, a negative learning rate), naming the option to change."""

        def flag(name: str) -> str:
            return _FLAGS.get(name, "--" + name.replace("_", "-"))

        for name in ("steps", "batch_size", "checkpoint_every", "val_batches", "log_every", "lr_decay_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{flag(name)} {getattr(self, name)}: give at least 1")
        for name in ("lr", "segment_seconds", "lr_decay", "grad_clip"):
            if not getattr(self, name) > 0:  # also refuses NaN
                raise UsageError(f"{flag(name)} {getattr(self, name)}: give a positive number")
        if not self.confusion_weight >= 0:
            raise UsageError(f"--lambda {self.confusion_weight}: give 0 or more")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise UsageError(f"--warmup {self.warmup_steps}: give 0 or more")
        if not 0 <= self.decoder_noise <= 1:
            raise UsageError(f"--decoder-noise {self.decoder_noise}: give a value from 0 to 1")
        if not 0 <= self.parallel <= 1:
            raise UsageError(f"--parallel {self.parallel}: give a share from 0 to 1")
        if self.workers < 0:
            raise UsageError(f"--loader-workers {self.workers}: give 0 (load in the main process) or more")

    @classmethod
    def from_dict(cls, values: dict) -> TrainOptions:
        values = dict(values)
        values["augmentation"] = Augmentation(**values.get("augmentation", {}))
        return cls(**values)


WARMUP_STEPS = 300
"""Learning-rate ramp of a run whose fresh optimiser starts on trained weights (``--init``,
``add-domain --refine``). Why: a fresh Adam's first steps move every weight by about the learning
rate whatever its gradient, which undoes much of what the weights had learned (measured on the
default model: its card, models/default/README.md)."""


def _with_warmup(options: TrainOptions, trained_weights: bool) -> TrainOptions:
    """Resolve the default ``--warmup``: a ramp where trained weights meet a fresh optimiser."""
    if options.warmup_steps is not None:
        return options
    return replace(options, warmup_steps=WARMUP_STEPS if trained_weights else 0)


StepCallback = Callable[[int, int, dict], None]
"""Called as ``on_step(step, total_steps, stats)`` after every step."""


def pick_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU; never assume CUDA (as for translation)."""
    return torch.device(resolve_device(name))


@dataclass
class TrainResult:
    model: Path
    steps: int
    losses: dict[str, float]
    val_losses: dict[str, float]
    wall_seconds: float
    main_process: bool = True  # False on the other ranks under torchrun, which should stay quiet


def _take_refined_decoders(out: Path, trainer: Trainer) -> dict[str, int]:
    """Go on from the decoders that ``add-domain --refine`` trained since the checkpoint.

    Why: the checkpoint holds the joint run's older weights for them, and the next checkpoint
    re-saves the whole model folder, which would silently throw the refinement away. Returns the
    refinement steps per domain so far (earlier ones were recorded in the manifest already).
    Refuses the resume when the folder holds decoders the checkpoint does not know.
    """
    if not (out / "manifest.json").is_file():
        return {}
    model = load_model(out)
    _refuse_to_drop_added_decoders(model, list(trainer.autoencoders.decoders))
    steps = dict(model.manifest.get("training", {}).get("refined_steps", {}))
    for domain, info in refined_decoders(model.manifest).items():
        if domain in trainer.autoencoders.decoders:
            trainer.start_decoder_from(model, domain)
            steps[domain] = steps.get(domain, 0) + info["steps"]
    return steps


def _refuse_to_drop_added_decoders(model: Model, domains: list[str]) -> None:
    """Stop a resume that would re-save the folder without the decoders ``add-domain`` added.

    Why: they are not in the checkpoint, so the next checkpoint would silently delete them; and
    they were trained against today's frozen encoder, which the joint run goes on changing, so
    carrying them along unchanged would not keep them working either.
    """
    added = sorted(set(model.domains) - set(domains))
    if added:
        raise TrainingError(
            f"{model.path}: going on with this run would drop decoder(s) {', '.join(added)}, added "
            f"by add-domain after its checkpoint; keep this model as it is and go on in another "
            f"folder instead: `train DATA -o NEW --init {model.path}`, then add them there again"
        )


def _start_from_model(model: Model, trainer: Trainer) -> dict:
    """Begin the run from ``model``'s weights: its encoder, its decoders of the domains this run
    shares, and its confusion net when the domains are the same; the optimiser starts afresh.

    Why: fine-tuning a trained model (the shipped one, on your own recordings, or on faster
    hardware) gets far sooner to a good model than starting from noise. Returns what the model
    card records about where the run started.
    """
    if model.config != trainer.config:
        same = [name for name, config in PRESETS.items() if config == model.config]
        hint = f"pass --preset {same[0]}" if same else "start from a model of this --preset"
        raise TrainingError(
            f"model {model.name!r} has another architecture than --preset {trainer.options.preset}; {hint}"
        )
    trainer.autoencoders.encoder.load_state_dict(model.encoder.state_dict())
    shared = [domain for domain in trainer.domains if domain in model.domains]
    for domain in shared:
        trainer.start_decoder_from(model, domain)
    same_domains = model.domains == trainer.domains
    if same_domains:
        trainer.confusion.load_state_dict(model.confusion().state_dict())
    earlier = model.manifest.get("training", {})
    refined = {d: info.get("steps", 0) for d, info in refined_decoders(model.manifest).items()}
    return {
        "model": model.name,
        "steps": earlier.get("steps", 0),
        "samples_seen": earlier.get("samples_seen", 0),
        "wall_seconds": earlier.get("wall_seconds", 0.0),
        "device": earlier.get("device", "?"),
        "refined_steps": refined,
        "decoders": shared,
        "confusion": same_domains,
        "initialised_from": earlier.get("initialised_from"),
    }


def _segment_samples(options: TrainOptions, config: ModelConfig) -> int:
    return max(1, round(options.segment_seconds * SAMPLE_RATE / config.pool)) * config.pool


Splits = dict[str, dict[str, list[Path]]]
"""Per domain, its ``train``/``val``/``test`` files."""


def _split(files: dict[str, list[Path]], seed: int, val_data: str | Path | None) -> tuple[Splits, str]:
    """Each domain's files split by a hash of their names 80/10/10, or, when the user keeps a
    validation folder of their own (``val_data``), all of ``files`` for training; and the rule."""
    if val_data is None:
        rule = f"sha256('{seed}:<domain>/<file>') -> 80/10/10 train/val/test"
        return {domain: split_files(found, seed) for domain, found in files.items()}, rule
    val_files = scan_domains(val_data)
    if list(val_files) != list(files):
        raise DataError(
            f"{val_data}: has domains {', '.join(val_files)}, the training data {', '.join(files)}; "
            "give a validation folder with the same domain sub-folders"
        )
    splits = {
        domain: {"train": found, "val": val_files[domain], "test": []} for domain, found in files.items()
    }
    return splits, f"every file for training; validation from {recorded_path(val_data)}"


def _load_sources(splits: Splits, segment: int, split: str) -> tuple[list, int]:
    """Open each domain's files of one split; returns sources and the skipped-file count."""
    sources, skipped = [], 0
    for domain, files in splits.items():
        opened, bad = open_sources(files[split], segment)
        skipped += bad
        if split == "train" and not opened:
            raise DataError(
                f"domain {domain!r}: no readable training file is at least {segment / SAMPLE_RATE:.2f} s long"
            )
        sources.append(opened)
    return sources, skipped


def _logged_step(line: str) -> float:
    """The step a log line records; a line a crash cut off (or any unreadable one) counts as
    after every step, so a resume drops it instead of dying on it."""
    try:
        step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
    return step if isinstance(step, int | float) else math.inf


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is where a training run keeps its checkpoint and logs."""
    return (
        (folder / "checkpoint").is_dir() or any(folder.glob("*.jsonl")) or (folder / "split.json").is_file()
    )


class _Log:
    """Append-only JSONL log, cut back to the resumed step so a restart never duplicates lines."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step and path.exists():
            kept = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
        write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def _loop(
    trainer: Trainer,
    sources: list[list],
    val_sources: list[list],
    start: int,
    options: TrainOptions,
    segment: int,
    checkpoint: Callable[[int, dict, dict], None],
    log: _Log,
    on_step: StepCallback | None,
    saved_in: Path,
) -> tuple[dict, dict]:
    """The training loop shared by ``train`` and ``add_domain``.

    A diverged step stops the run before anything from it is written, with a message that says
    which checkpoint (in ``saved_in``) is the last good one.
    """
    dist = trainer.dist
    batches = DomainBatches(
        sources, options.batch_size, segment, options.seed, options.augmentation, dist.rank, options.parallel
    )
    val = DomainBatches(
        val_sources, options.batch_size, segment, options.seed + 1, Augmentation(enabled=False)
    )
    n = len(val_sources)
    val_batches = [val[k * n + d] for k in range(options.val_batches) for d in range(n) if val_sources[d]]
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, options.steps),
        num_workers=options.workers,
        prefetch_factor=2 if options.workers else None,
    )
    latest: dict[str, float] = {}
    val_losses: dict[str, float] = {}
    tic = time.perf_counter()
    samples = 0
    saved = start  # a resumed run's checkpoint stays the good one until a newer one is written
    for step, (domain, input_domains, encoder_input, target) in enumerate(loader, start=start + 1):
        checkpointing = step % options.checkpoint_every == 0 or step == options.steps
        try:
            stats = trainer.step(step - 1, domain, input_domains, encoder_input, target)
            if checkpointing:
                trainer.check_finite(step)
        except DivergedError as exc:
            kept = "no checkpoint was written yet"
            if saved:
                kept = f"the last good checkpoint (step {saved}) is kept in {saved_in}"
            raise DivergedError(f"{exc}; {kept}; lower --lr or check the data") from None
        latest[stats["domain"]] = stats["reconstruction"]
        samples += target.numel() * dist.world
        stats["samples_per_second"] = samples / (time.perf_counter() - tic)
        stats["step"] = step
        if step % options.log_every == 0 or step == options.steps:
            log.write(stats)
        if checkpointing:
            if val_batches:
                val_losses = trainer.validate(val_batches)
            if dist.main:
                checkpoint(step, latest, val_losses)
            saved = step
            dist.barrier()
        if on_step is not None:
            on_step(step, options.steps, stats)
    return latest, val_losses


def train(
    data: str | Path,
    out: str | Path,
    options: TrainOptions = TrainOptions(),
    resume: bool = False,
    on_step: StepCallback | None = None,
    val_data: str | Path | None = None,
    init: Model | None = None,
    force: bool = False,
) -> TrainResult:
    """Train a model on ``data`` (one folder per domain) and write it to the model folder ``out``.

    Validation uses a tenth of ``data``'s files (another tenth is held out untouched), or all of
    ``val_data``, a folder laid out like ``data``, when the data comes split already. ``init``
    starts a new run from a trained model's weights (``--init``) instead of from noise.

    ``out`` may already hold a model only with ``resume`` (of its run) or ``force`` (a new run in
    its place); a folder that is not a model is never written (``claim_model_folder``).
    """
    if init is not None and resume:
        raise UsageError(
            "--init starts a new run from a model's weights and --resume goes on with a checkpoint; give one"
        )
    options = _with_warmup(options, trained_weights=init is not None)
    out = Path(out)
    run = run_folder(out)
    ask = "pass --resume to continue its run, or --force to train a new model in its place"
    model_exists = claim_model_folder(out, replace=resume or force, ask=ask)
    claim_folder(run, is_run_folder, "training run", replace=True, ask="")
    config = preset(options.preset)
    files = scan_domains(data)
    if len(files) < 2:
        raise DataError(
            f"{data}: found one domain ({', '.join(files)}); the confusion net needs at least two. "
            "To add a single domain to a trained model use `musictranslate add-domain`"
        )
    domains = list(files)
    dist = Distributed(pick_device(options.device))
    try:
        segment = _segment_samples(options, config)
        splits, split_rule = _split(files, options.seed, val_data)
        sources, skipped = _load_sources(splits, segment, "train")
        val_sources, _ = _load_sources(splits, segment, "val")
        input_level_db = training_level_db(sources)
        trainer = Trainer(config, domains, options, dist)
        samples_per_step = options.batch_size * segment * dist.world
        start, history_seconds, history_samples = 0, 0.0, 0
        refined_steps: dict[str, int] = {}
        initialised_from = None
        restore_interrupted(run / "checkpoint")  # killed mid-swap: the previous one is still there
        if resume:
            tensors, meta = load_checkpoint(run)
            if meta["architecture"] != config.to_dict():
                raise TrainingError(
                    f"{run / 'checkpoint'}: was trained with another architecture (preset "
                    f"{meta['options']['preset']!r}); resume with the same --preset or start a new --output"
                )
            if meta["domains"] != domains:
                raise TrainingError(
                    f"{run / 'checkpoint'}: was trained on domains {meta['domains']}, data has {domains}"
                )
            try:
                trainer.load_state(tensors, meta["optimizer_groups"])
            except (RuntimeError, KeyError, ValueError) as exc:
                raise TrainingError(
                    f"{run / 'checkpoint'}: does not fit this run ({first_line(exc)[:200]}); "
                    "delete it to start over, or train into another --output"
                ) from None
            start, history_seconds = meta["step"], meta.get("wall_seconds", 0.0)
            # counted, not recomputed from today's batches: a run may go on with other ones
            history_samples = meta.get("samples_seen", start * samples_per_step)
            initialised_from = meta.get("initialised_from")
            refined_steps = _take_refined_decoders(out, trainer)
        elif (run / "checkpoint").exists() and not force:
            raise TrainingError(
                f"{run}: a previous run exists; pass --resume to continue it, or pick another --output"
            )
        elif init is not None:  # loaded only once no check above refuses the run
            initialised_from = _start_from_model(init, trainer)
        if start >= options.steps:
            raise TrainingError(f"checkpoint is at step {start}; ask for more --steps than that to go on")
        if dist.main:
            run.mkdir(parents=True, exist_ok=True)
            split_record = {d: {k: [p.name for p in v] for k, v in s.items()} for d, s in splits.items()}
            write_text(run / "split.json", json.dumps(split_record, indent=1))
        log = _Log(run / "log.jsonl", start, dist.main)
        tic = time.perf_counter()

        def checkpoint(step: int, losses: dict, val_losses: dict) -> None:
            nonlocal model_exists
            seconds = history_seconds + time.perf_counter() - tic
            provenance = {
                "steps": step,
                "samples_seen": history_samples + (step - start) * samples_per_step,
                "wall_seconds": round(seconds, 1),
                "world_size": dist.world,
                "device": dist.device.type,
                "data": recorded_path(data),
                "domains": {d: {k: len(v) for k, v in s.items()} for d, s in splits.items()},
                "split_rule": split_rule,
                "input_level_db": input_level_db,
                "refined_steps": refined_steps,
                "initialised_from": initialised_from,
                "skipped_files": skipped,
                "losses": losses,
                "val_losses": val_losses,
                "options": asdict(options),
            }
            a = trainer.autoencoders
            decoders = dict(a.decoders.items())
            save_model(out, config, a.encoder, trainer.confusion, decoders, provenance, replace=model_exists)
            model_exists = True  # written by this run from now on
            meta = {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "wall_seconds": seconds,
                "samples_seen": provenance["samples_seen"],
                "architecture": config.to_dict(),
                "domains": domains,
                "options": asdict(options),
                "initialised_from": initialised_from,
            }
            save_checkpoint(run, trainer, meta)

        saved_in = run / "checkpoint"
        losses, val_losses = _loop(
            trainer, sources, val_sources, start, options, segment, checkpoint, log, on_step, saved_in
        )
        wall = history_seconds + time.perf_counter() - tic
        return TrainResult(out, options.steps, losses, val_losses, wall, dist.main)
    finally:
        dist.close()


def add_domain(
    model: Model,
    data: str | Path,
    name: str,
    options: TrainOptions = TrainOptions(),
    on_step: StepCallback | None = None,
    refine: bool = False,
) -> TrainResult:
    """Train a decoder for a new domain on ``data`` alone with the encoder frozen, and add it.

    Nothing else in the model changes: the encoder, the confusion net and the other decoders keep
    their files and hashes; the model gains ``decoders/<name>.safetensors`` and a manifest entry.

    ``refine`` instead trains the model's existing ``name`` decoder further, from its weights.
    Why: joint training gives each of N decoders only 1/N of the steps, and a decoder-only step
    skips the encoder's backward pass, so one weak target domain improves several times faster
    this way -- and, the encoder being frozen, no other domain can get worse. Running it again
    goes on from the saved decoder (the optimiser restarts); the steps add up in the manifest.
    """
    if not is_domain_name(name):
        raise UsageError(f"{name!r}: not a domain name; {DOMAIN_RULE}; choose one with --name")
    if refine and name not in model.domains:
        raise TrainingError(
            f"model {model.name!r} has no domain {name!r} to refine (it has {', '.join(model.domains)}); "
            "drop --refine to add it"
        )
    if not refine and name in model.domains:
        raise TrainingError(
            f"model {model.name!r} already has a domain {name!r}; pick another --name, "
            "or pass --refine to train that decoder further"
        )
    from .data import audio_files

    folder = Path(data)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of audio files")
    files = audio_files(folder)
    if not files:
        raise DataError(f"{folder}: no audio files found; add some or check the path")
    config = model.config
    dist = Distributed(pick_device(options.device))
    try:
        segment = _segment_samples(options, config)
        splits = {name: split_files(files, options.seed)}
        sources, skipped = _load_sources(splits, segment, "train")
        val_sources, _ = _load_sources(splits, segment, "val")
        earlier = model.manifest["decoders"][name].get("provenance", {}) if refine else {}
        start = earlier.get("steps", 0)  # a refinement goes on with new batches, steps add up
        options = _with_warmup(replace(options, steps=start + options.steps), trained_weights=refine)
        trainer = Trainer(config, [name], options, dist, encoder=model.encoder, train_encoder=False)
        trainer.first_step = start
        if refine:
            trainer.start_decoder_from(model, name)
        tic = time.perf_counter()

        def checkpoint(step: int, losses: dict, val_losses: dict) -> None:
            provenance = {
                "steps": step,
                "data": recorded_path(folder),
                "files": {k: len(v) for k, v in splits[name].items()},
                "skipped_files": skipped,
                "losses": losses,
                "val_losses": val_losses,
                "wall_seconds": round(earlier.get("wall_seconds", 0.0) + time.perf_counter() - tic, 1),
                "encoder_frozen": True,
                "lr": options.lr,
                "warmup_steps": options.warmup_steps,
            }
            if refine:  # on top of the joint run's (or an earlier refinement's) weights
                provenance["refined"] = True
            add_decoder(model, name, trainer.autoencoders.decoders[name], provenance)

        log_name = f"{'refine' if refine else 'add'}-{name}.jsonl"
        log = _Log(run_folder(model.path) / log_name, start, dist.main)
        losses, val_losses = _loop(
            trainer, sources, val_sources, start, options, segment, checkpoint, log, on_step, model.path
        )
        return TrainResult(model.path, options.steps, losses, val_losses, time.perf_counter() - tic)
    finally:
        dist.close()
