"""A model folder's README.md, written from its manifest so it can never disagree with it.

Training rewrites the card at every checkpoint: what the model was trained on, for how long, and
its losses. Scores from ``evaluate`` belong to one checkpoint, so they are added by hand (or by
a script) after a run and are dropped when training goes on (kept when only the low-latency
encoder changes, which the scores do not use). A hand-written ``## History``
section at the end (how the model came to be, runs that were tried and not shipped) is kept
across every rewrite: it is the one part of the card no manifest can reproduce.
"""

from __future__ import annotations

import math

from .config import SAMPLE_RATE
from .manifest import LOW_LATENCY


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


HISTORY = "\n## History"
"""Heading of the card's hand-written last section, which re-rendering the card keeps."""
EVALUATION = "\n## Evaluation"
"""Heading of the section of scores that ``examples/evaluate_default.py`` writes above History."""


def history_of(card: str, with_evaluation: bool = False) -> str:
    """The hand-written ``## History`` section of a card's text, to its end; '' when it has none.
    ``with_evaluation``: from the scores' section on, where the card has one."""
    if with_evaluation and EVALUATION in card:
        return card[card.index(EVALUATION) :]
    return card[card.index(HISTORY) :] if HISTORY in card else ""


def render_model_card(manifest: dict, history: str = "") -> str:
    """Markdown describing the model in ``manifest`` (registry format), ending with ``history``
    (the kept section of the card it replaces, see ``history_of``)."""
    arch = manifest["architecture"]
    training = manifest.get("training", {})
    domains = list(manifest["decoders"])
    lines = [
        f"# Model `{manifest.get('name', '?')}`",
        "",
        "A universal music translation network: one shared encoder, one WaveNet decoder per domain.",
        "",
        f"- Domains (decoders): {', '.join(domains)}",
        f"- Audio: {manifest.get('sample_rate', SAMPLE_RATE)} Hz mono, "
        f"{manifest.get('mu', 255) + 1}-class mu-law",
        f"- Encoder: {arch['encoder_blocks']} blocks x {arch['encoder_layers']} layers, "
        f"{arch['encoder_channels']} channels, latent {arch['latent_dim']}-d every {arch['pool']} samples",
        f"- Decoders: {arch['decoder_blocks']} blocks x {arch['decoder_layers']} layers, "
        f"{arch['residual_channels']} residual / {arch['skip_channels']} skip channels",
    ]
    if training:
        options = training.get("options", {})
        seen = training.get("samples_seen", 0)
        lines += [
            "",
            "## Training",
            "",
            f"- Steps: {training.get('steps', '?')} (batches of {options.get('batch_size', '?')} x "
            f"{options.get('segment_seconds', '?')} s from one domain each, domains in turn)",
            f"- Audio seen: {_hours(seen / SAMPLE_RATE)} in all; "
            f"wall time {_hours(training.get('wall_seconds', 0))} "
            f"on {training.get('world_size', 1)} x {training.get('device', '?')}",
            f"- Learning rate {options.get('lr', '?')}, "
            f"confusion weight lambda {options.get('confusion_weight', '?')}, "
            f"bf16 autocast {options.get('bf16', False)}, pitch-shift augmentation "
            f"{options.get('augmentation', {}).get('enabled', '?')}",
            f"- Data: `{training.get('data', '?')}`; files per domain and split: "
            + "; ".join(f"{d} {v}" for d, v in training.get("domains", {}).items()),
            f"- Split rule: {training.get('split_rule', '?')}",
        ]
        if training.get("initialised_from"):
            lines.append(f"- Started from the weights of {_lineage(training['initialised_from'])}")
        if training.get("refined_steps"):
            refined = ", ".join(f"{d} {n} steps" for d, n in training["refined_steps"].items())
            lines.append(f"- Refined alone with the encoder frozen before the joint run went on: {refined}")
        lines += [
            "",
            "| domain | train loss (last batch) | validation loss |",
            "| --- | --- | --- |",
        ]
        losses, val = training.get("losses", {}), training.get("val_losses", {})
        for domain in domains:
            train_loss = losses.get(domain, math.nan)
            val_loss = val.get(domain, math.nan)
            lines.append(f"| {domain} | {train_loss:.3f} | {val_loss:.3f} |")
        lines += ["", f"Cross-entropy in nats over 256 classes; a uniform guess scores {math.log(256):.3f}."]
    lines += _later_decoders(manifest["decoders"])
    lines += _low_latency_encoder(manifest.get(LOW_LATENCY))
    return "\n".join(lines) + "\n" + history


def _low_latency_encoder(entry: dict | None) -> list[str]:
    """What ``distill`` recorded of the causal encoder ``live --low-latency`` uses, if any."""
    if not entry:
        return []
    done = entry.get("provenance", {})
    options = done.get("options", {})
    return [
        "",
        "## Low-latency encoder",
        "",
        f"A causal copy of the encoder (`live --low-latency`: no look-ahead) taught its latent "
        f"(`musictranslate distill`): {done.get('steps', '?')} steps of {options.get('batch_size', '?')} "
        f"segments, learning rate {options.get('lr', '?')}, {_hours(done.get('wall_seconds', 0))}; "
        f"held-out latent error {done.get('val_error', math.nan):.3f} (squared error over the "
        f"latent's variance; {done.get('start_val_error', math.nan):.3f} before training).",
    ]


def _lineage(start: dict) -> str:
    """``model `x` (5850 steps; 5.76 h on cpu; piano refined 3650 steps)``, and so on back to the
    run that started from noise: a model trained in stages says what each stage added."""
    parts = [
        f"{start.get('steps', '?')} steps",
        f"{_hours(start.get('wall_seconds', 0))} on {start.get('device', '?')}",
    ]
    if start.get("refined_steps"):
        parts.append(", ".join(f"{d} refined {n} steps" for d, n in start["refined_steps"].items()))
    text = f"model `{start.get('model', '?')}` ({'; '.join(parts)}); the optimiser started afresh"
    if start.get("initialised_from"):
        text += f"; it had started from {_lineage(start['initialised_from'])}"
    return text


def _later_decoders(decoders: dict) -> list[str]:
    """Rows for the decoders that ``add-domain`` added or refined after the joint run.

    Why: their losses and steps are their own (encoder frozen), and a refined decoder's joint-run
    loss in the table above no longer describes it.
    """
    later = {d: e["provenance"] for d, e in decoders.items() if "provenance" in e}
    if not later:
        return []
    lines = [
        "",
        "## Decoders trained after the joint run (encoder frozen, `add-domain`)",
        "",
        "| domain | how | steps | wall time | learning rate | train loss (last batch) | validation loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for domain, info in later.items():
        how = "Refined from the joint run's decoder" if info.get("refined") else "Added"
        train_loss = info.get("losses", {}).get(domain, math.nan)
        val_loss = info.get("val_losses", {}).get(domain, math.nan)
        lines.append(
            f"| {domain} | {how} | {info.get('steps', '?')} | {_hours(info.get('wall_seconds', 0))} | "
            f"{info.get('lr', '?')} | {train_loss:.3f} | {val_loss:.3f} |"
        )
    return lines
