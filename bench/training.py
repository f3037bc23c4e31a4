"""Training throughput: audio samples per second through one full training step.

A step is what ``musictranslate train`` runs (``train_step.Trainer.step``): the confusion net's step,
then the encoder and decoder forward and backward against it, gradient clipping and Adam. Batches
of 0.25 s segments, float32 and bf16 autocast, on all the threads torch uses.
"""

from __future__ import annotations

import torch

from musictranslate.config import SAMPLE_RATE, preset

from . import Stopwatch, best_of, rate, table

SEGMENT_SECONDS = 0.25
BATCH = {"paper": 2, "small": 8}


def step_rate(name: str, bf16: bool, steps: int) -> float:
    """Samples/s of ``steps`` training steps (after one untimed step)."""
    from musictranslate.distributed import Distributed
    from musictranslate.train import TrainOptions
    from musictranslate.train_step import Trainer

    cfg = preset(name)
    batch, length = BATCH[name], int(SEGMENT_SECONDS * SAMPLE_RATE)
    options = TrainOptions(preset=name, batch_size=batch, segment_seconds=SEGMENT_SECONDS, bf16=bf16)
    trainer = Trainer(cfg, ["a", "b"], options, Distributed(torch.device("cpu")))
    target = torch.randint(0, cfg.n_classes, (batch, length))
    encoder_input = target.float() * (2 / (cfg.n_classes - 1)) - 1
    trainer.step(0, 0, torch.zeros(batch, dtype=torch.long), encoder_input, target)
    clock = Stopwatch()
    for step in range(1, steps + 1):
        trainer.step(step, step % 2, torch.full((batch,), step % 2), encoder_input, target)
    return steps * batch * length / clock.seconds


def run(quick: bool) -> dict:
    names = ("small",) if quick else ("paper", "small")
    results, rows = {}, []
    for name in names:
        steps = 1 if quick or name == "paper" else 2
        measures = {
            "float32": lambda n=name, s=steps: step_rate(n, False, s),
            "bf16 autocast": lambda n=name, s=steps: step_rate(n, True, s),
        }
        best = best_of(1, measures)
        results[name] = best
        rows += [(name, BATCH[name], mode, rate(value)) for mode, value in best.items()]
    header = ("preset", f"batch x {SEGMENT_SECONDS} s", "precision", "samples/s")
    table(f"training step (fwd+bwd, {torch.get_num_threads()} threads)", header, rows)
    return results
