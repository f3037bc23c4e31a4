"""The public API: ``translate(audio, domain)`` and ``blend(a, b, domain)`` -> audio.

Audio in and out is mono float32 at 16 kHz (``load_audio`` gives exactly that). A user can do
what the CLI does in three lines::

    from musictranslate import load_audio, load_model, translate
    model = load_model("default")
    piano = translate(load_audio("whistle.wav"), "piano", model)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .audio import check_audible, companded, mu_law_encode
from .config import SAMPLE_RATE
from .generate import FastDecoder, GenerationOptions, Progress, generate
from .registry import Model, load_model

ENCODE_CHUNK_FRAMES = 600
"""Frames (30 s at the paper's pool) encoded per chunk, so memory stays flat on long files."""


def _as_model(model: Model | str | None) -> Model:
    if isinstance(model, Model):
        return model
    return load_model(model or "default")


@torch.inference_mode()
def encode(model: Model, audio: np.ndarray) -> torch.Tensor:
    """Audio -> latent ``(latent_dim, frames)``, one frame per ``pool`` samples (end zero-padded).

    Chunks overlap by the encoder's receptive field and only each chunk's valid centre is kept,
    so the result equals encoding the whole file at once while memory stays bounded.
    """
    cfg = model.config
    pool = cfg.pool
    frames = max(1, math.ceil(len(audio) / pool))
    signal = torch.from_numpy(companded(mu_law_encode(audio)))
    signal = F.pad(signal, (0, frames * pool - len(audio)), value=float(companded(np.array(128))))
    context = math.ceil(cfg.encoder_context / pool) * pool
    chunk = ENCODE_CHUNK_FRAMES * pool
    latents = []
    for start in range(0, frames * pool, chunk):
        stop = min(start + chunk, frames * pool)
        lo, hi = max(0, start - context), min(frames * pool, stop + context)
        features = model.encoder.features(signal[None, lo:hi])[:, :, start - lo : stop - lo]
        latents.append(F.avg_pool1d(features, pool)[0])
    return torch.cat(latents, dim=1)


def decode(
    model: Model,
    latent: torch.Tensor,
    domain: str,
    length: int,
    options: GenerationOptions = GenerationOptions(),
    progress: Progress | None = None,
) -> np.ndarray:
    """Latent -> ``length`` samples of audio in ``domain`` with the cached batched generator."""
    fast = FastDecoder(model.decoder(domain), options.dtype, options.device)
    return generate(fast, latent, length, options, progress)


def translate(
    audio: np.ndarray,
    domain: str,
    model: Model | str | None = None,
    options: GenerationOptions = GenerationOptions(),
    progress: Progress | None = None,
) -> np.ndarray:
    """Translate mono 16 kHz ``audio`` (any source, even an unseen instrument) into ``domain``."""
    model = _as_model(model)
    model.check_domain(domain)
    check_audible(audio, "input", model.config.pool)
    return decode(model, encode(model, audio), domain, len(audio), options, progress)


def blend_latents(
    first: torch.Tensor, second: torch.Tensor, keep_frames: int, fade_frames: int
) -> torch.Tensor:
    """The paper's blend: ``first``'s opening, a linear crossfade into ``second``, then its rest."""
    keep_frames = min(keep_frames, first.shape[1])
    fade_frames = min(fade_frames, first.shape[1] - keep_frames, second.shape[1])
    weight = torch.arange(fade_frames, dtype=first.dtype) / max(fade_frames, 1)
    faded = (
        first[:, keep_frames : keep_frames + fade_frames] * (1 - weight) + second[:, :fade_frames] * weight
    )
    return torch.cat([first[:, :keep_frames], faded, second[:, fade_frames:]], dim=1)


def blend(
    first: np.ndarray,
    second: np.ndarray,
    domain: str,
    model: Model | str | None = None,
    keep: float = 3.5,
    crossfade: float = 1.5,
    options: GenerationOptions = GenerationOptions(),
    progress: Progress | None = None,
) -> np.ndarray:
    """Blend two pieces in latent space and decode the blend with ``domain``'s decoder.

    Keeps the first ``keep`` seconds of ``first``'s latent, crossfades the next ``crossfade``
    seconds of it with the first ``crossfade`` seconds of ``second``'s, then continues with the
    rest of ``second``.
    """
    model = _as_model(model)
    model.check_domain(domain)
    latent = encode_blend(model, first, second, keep, crossfade)
    length = latent.shape[1] * model.config.pool
    return decode(model, latent, domain, length, options, progress)


def encode_blend(
    model: Model, first: np.ndarray, second: np.ndarray, keep: float = 3.5, crossfade: float = 1.5
) -> torch.Tensor:
    """The blended latent of ``blend``, without decoding: encode once, decode in many domains."""
    if keep < 0 or crossfade < 0:
        raise ValueError("keep and crossfade must be >= 0 seconds")
    for name, audio in (("first input", first), ("second input", second)):
        check_audible(audio, name, model.config.pool)
    frame_rate = SAMPLE_RATE / model.config.pool
    return blend_latents(
        encode(model, first),
        encode(model, second),
        round(keep * frame_rate),
        round(crossfade * frame_rate),
    )
