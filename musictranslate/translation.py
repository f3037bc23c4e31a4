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
from .fast_encoder import FastEncoder
from .generate import DTypeLike, FastDecoder, GenerationOptions, Progress, generate, resolve_dtype
from .input_fit import AUTO, fit_input
from .registry import Model, load_model
from .speed import native_bf16

ENCODE_CHUNK_FRAMES = 600
"""Frames (30 s at the paper's pool) encoded per chunk, so memory stays flat on long files."""


def _as_model(model: Model | str | None) -> Model:
    if isinstance(model, Model):
        return model
    return load_model(model or "default")


@torch.inference_mode()
def encode(model: Model, audio: np.ndarray, dtype: DTypeLike | None = None) -> torch.Tensor:
    """Audio -> latent ``(latent_dim, frames)``, one frame per ``pool`` samples (end zero-padded).

    ``dtype`` None means bfloat16 where the CPU has native bf16 dot products (3x faster; see
    ``fast_encoder.py`` for what it costs in accuracy), else float32.

    Chunks overlap by the encoder's receptive field and only each chunk's valid centre is kept,
    so the result equals encoding the whole file at once while memory stays bounded. Each chunk
    is mu-law encoded on its own too: the whole file as int64 classes and float temporaries
    would cost several times the audio itself on an hours-long input.
    """
    cfg = model.config
    pool = cfg.pool
    total = max(1, math.ceil(len(audio) / pool)) * pool
    silence = float(companded(np.array(128)))
    context = math.ceil(cfg.encoder_context / pool) * pool
    chunk = ENCODE_CHUNK_FRAMES * pool
    automatic = torch.bfloat16 if native_bf16() else torch.float32
    fast = FastEncoder(model.encoder, resolve_dtype(dtype, default=automatic))
    # written in place: small per-chunk results kept between large freed temporaries fragment
    # the heap so that resident memory grows with the file (glibc), however small each chunk is
    latent = torch.empty(cfg.latent_dim, total // pool)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        lo, hi = max(0, start - context), min(total, stop + context)
        piece = companded(mu_law_encode(audio[lo:hi]))
        signal = F.pad(torch.from_numpy(piece), (0, hi - lo - len(piece)), value=silence)
        features = fast.features(signal)[start - lo : stop - lo]
        latent[:, start // pool : stop // pool] = features.reshape(-1, pool, cfg.latent_dim).mean(1).t()
    return latent


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
    transpose: int | str = AUTO,
) -> np.ndarray:
    """Translate mono 16 kHz ``audio`` (any source, even an unseen instrument) into ``domain``.

    The input is first fitted to the model's training level and register (``fit_input``;
    ``transpose`` in semitones, or ``"auto"``); the result is at the model's level.
    """
    model = _as_model(model)
    model.check_domain(domain)
    check_audible(audio, "input", model.config.pool)
    latent, _ = encode_fitted(model, audio, transpose)
    return decode(model, latent, domain, len(audio), options, progress)


def encode_fitted(model: Model, audio: np.ndarray, transpose: int | str = AUTO) -> tuple[torch.Tensor, int]:
    """``encode`` after ``fit_input`` (the model's training level and register): the latent, and
    the semitones the input was shifted by."""
    fitted = fit_input(audio, model.input_level_db, transpose)
    return encode(model, fitted.audio), fitted.semitones


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
    transpose: int | str = AUTO,
) -> np.ndarray:
    """Blend two pieces in latent space and decode the blend with ``domain``'s decoder.

    Keeps the first ``keep`` seconds of ``first``'s latent, crossfades the next ``crossfade``
    seconds of it with the first ``crossfade`` seconds of ``second``'s, then continues with the
    rest of ``second``. Each piece is fitted on its own, as in ``translate``.
    """
    model = _as_model(model)
    model.check_domain(domain)
    latent, _ = encode_blend(model, first, second, keep, crossfade, transpose)
    length = latent.shape[1] * model.config.pool
    return decode(model, latent, domain, length, options, progress)


def encode_blend(
    model: Model,
    first: np.ndarray,
    second: np.ndarray,
    keep: float = 3.5,
    crossfade: float = 1.5,
    transpose: int | str = AUTO,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The blended latent of ``blend``, without decoding (encode once, decode in many domains),
    and the semitones each piece was shifted by."""
    if keep < 0 or crossfade < 0:
        raise ValueError("keep and crossfade must be >= 0 seconds")
    for name, audio in (("first input", first), ("second input", second)):
        check_audible(audio, name, model.config.pool)
    (a, a_shift), (b, b_shift) = (encode_fitted(model, audio, transpose) for audio in (first, second))
    frame_rate = SAMPLE_RATE / model.config.pool
    latent = blend_latents(a, b, round(keep * frame_rate), round(crossfade * frame_rate))
    return latent, (a_shift, b_shift)
