"""Stored numbers of the shipped default model, for the golden test (``test_shipped_model.py``).

The shipped weights are checked by sha256 when they load, but a hash only says the files are the
ones the manifest names: a model swapped together with its manifest, or a change to the maths of
the encoder or decoder, passes it. These numbers pin what the model computes. Regenerate them
only when a better model ships, and commit them with it:

    python -m tests.golden
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from musictranslate.audio import companded, mu_law_encode
from musictranslate.registry import load_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "default"
WHISTLE = ROOT / "examples" / "whistle.wav"
GOLDEN = Path(__file__).resolve().parent / "data" / "default_golden.npz"
SECOND = slice(16_000, 32_000)
"""One second of the example whistle (seconds 1-2: whistled notes throughout)."""
PIANO_SLICE = slice(8_000, 8_128)
"""Samples whose next-sample distributions of the piano decoder are stored in full; of every
decoder, the mean distribution over the whole second and its cross-entropy on the whistle are
stored as well, so a swapped decoder of any domain shows."""


@torch.inference_mode()
def shipped_numbers(folder: Path = SHIPPED) -> dict[str, np.ndarray]:
    """The latent of one second of the whistle, and what each decoder predicts from it, teacher
    forced, in float32 with the training modules (no fast paths, no sampling).

    Probabilities rather than raw logits: logits reach about 50, where float32 sums taken in
    another order (another thread count) differ by more than 1e-4.
    """
    model = load_model(folder)
    audio, rate = sf.read(WHISTLE, dtype="float32")
    assert rate == model.manifest["sample_rate"]
    classes = mu_law_encode(audio[SECOND])
    latent = model.encoder(torch.from_numpy(companded(classes))[None])
    target = torch.from_numpy(classes)[None].long()
    numbers = {"latent": latent[0].numpy()}
    for domain in model.domains:
        logits = model.decoder(domain)(target, latent)
        probabilities = logits.softmax(dim=1)[0]
        numbers[f"{domain}_mean_probabilities"] = probabilities.mean(dim=1).numpy()
        numbers[f"{domain}_cross_entropy"] = F.cross_entropy(logits, target).numpy()
        if domain == "piano":
            numbers["piano_probabilities"] = probabilities[:, PIANO_SLICE].numpy()
    return numbers


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **shipped_numbers())
    print(f"wrote {GOLDEN.relative_to(ROOT)} ({GOLDEN.stat().st_size // 1024} KB)")
