"""The public API: ``translate(audio, domain)`` and ``blend(a, b, domain)`` -> audio.

Audio in and out is mono float32 at 16 kHz (``load_audio`` gives exactly that). Every function
takes the audio (or latent) first and the model as the keyword ``model`` (a ``Model``, a registry
name or a folder; ``"default"`` when left out). A user gets what the CLI writes in three lines::

    from musictranslate import load_audio, load_model, translate
    model = load_model("default")
    piano = translate(load_audio("whistle.wav"), "piano", model=model)

Like the CLI, generation runs on ``"auto"``: CUDA when torch sees a device, else the CPU, and the
result is matched to the input's loudness (``match_loudness=False`` leaves the decoder's level).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .audio import check_audible, companded, mu_law_encode
from .catalog import DEFAULT_MODEL
from .config import SAMPLE_RATE
from .fast_encoder import FastEncoder
from .generate import FastDecoder, Progress, generate
from .input_fit import AUTO, fit_input
from .loudness import match_loudness as matched
from .pitch_guide import PitchGuide
from .registry import Model, load_model
from .retune import retune
from .runtime import native_bf16, resolve_device
from .speed import DTypeLike, GenerationOptions, resolve_dtype

ENCODE_CHUNK_FRAMES = 600
"""Frames (30 s at the paper's pool) encoded per chunk, so memory stays flat on long files."""

ModelLike = Model | str | os.PathLike


class BlendWarning(UserWarning):
    """``keep`` reaches past the end of the first input: the blend has no crossfade."""


def _as_model(model: ModelLike) -> Model:
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise TypeError(f"model must be a Model, a registry name or a folder, not {type(model).__name__}")


@torch.inference_mode()
def encode(
    audio: np.ndarray, *, model: ModelLike = DEFAULT_MODEL, dtype: DTypeLike | None = None
) -> torch.Tensor:
    """Audio -> latent ``(latent_dim, frames)``, one frame per ``pool`` samples (end zero-padded).

    ``dtype`` None means bfloat16 where the CPU has native bf16 dot products (3x faster; see
    ``fast_encoder.py`` for what it costs in accuracy), else float32.

    Chunks overlap by the encoder's receptive field and only each chunk's valid centre is kept,
    so the result equals encoding the whole file at once while memory stays bounded. Each chunk
    is mu-law encoded on its own too: the whole file as int64 classes and float temporaries
    would cost several times the audio itself on an hours-long input.
    """
    model = _as_model(model)
    cfg = model.config
    pool = cfg.pool
    total = max(1, math.ceil(len(audio) / pool)) * pool
    silence = float(companded(np.array(128)))
    before, after = (math.ceil(side / pool) * pool for side in model.encoder.context)
    chunk = ENCODE_CHUNK_FRAMES * pool
    automatic = torch.bfloat16 if native_bf16() else torch.float32
    fast = FastEncoder(model.encoder, resolve_dtype(dtype, default=automatic))
    # written in place: small per-chunk results kept between large freed temporaries fragment
    # the heap so that resident memory grows with the file (glibc), however small each chunk is
    latent = torch.empty(cfg.latent_dim, total // pool)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        lo, hi = max(0, start - before), min(total, stop + after)
        piece = companded(mu_law_encode(audio[lo:hi]))
        signal = F.pad(torch.from_numpy(piece), (0, hi - lo - len(piece)), value=silence)
        features = fast.features(signal)[start - lo : stop - lo]
        latent[:, start // pool : stop // pool] = features.reshape(-1, pool, cfg.latent_dim).mean(1).t()
    return latent


def decode(
    latent: torch.Tensor,
    domain: str,
    *,
    model: ModelLike = DEFAULT_MODEL,
    length: int | None = None,
    options: GenerationOptions | None = None,
    progress: Progress | None = None,
    loudness_of: np.ndarray | None = None,
    guide: PitchGuide | None = None,
) -> np.ndarray:
    """Latent -> ``length`` samples (default: every frame's) in ``domain`` with the cached
    batched generator, at ``loudness_of``'s loudness when given (peak-limited to -1 dBFS);
    ``guide``, the pitch of the input the latent was encoded from, for ``options.follow_pitch``
    and ``options.retune``.

    ``options`` None generates as the CLI does: on ``auto`` (CUDA when present, else the CPU);
    a device ``"auto"`` in ``options`` is resolved the same way.
    """
    model = _as_model(model)
    model.check_domain(domain)
    options = options or GenerationOptions(device="auto")
    options = replace(options, device=resolve_device(options.device))
    if length is None:
        length = latent.shape[1] * model.config.pool
    fast = FastDecoder(model.decoder(domain), options.dtype, options.device)
    audio = generate(fast, latent, length, options, progress, guide)
    if options.retune and guide is not None:
        audio = retune(audio, guide)
    return audio if loudness_of is None else matched(audio, loudness_of)


def translate(
    audio: np.ndarray,
    domain: str,
    *,
    model: ModelLike = DEFAULT_MODEL,
    options: GenerationOptions | None = None,
    progress: Progress | None = None,
    transpose: int | str = AUTO,
    match_loudness: bool = True,
) -> np.ndarray:
    """Translate mono 16 kHz ``audio`` (any source, even an unseen instrument) into ``domain``.

    The input is first fitted to the model's training level and register (``fit_input``;
    ``transpose`` in semitones, or ``"auto"``); the result is at the input's loudness, as the
    CLI writes it, unless ``match_loudness`` is False (then at the model's level).
    """
    model = _as_model(model)
    model.check_domain(domain)
    check_audible(audio, "input", model.config.pool)
    options = options or GenerationOptions(device="auto")
    encoded = encode_fitted(audio, model=model, transpose=transpose, guide=options.pitch_guided)
    reference = audio if match_loudness else None
    return decode(
        encoded.latent,
        domain,
        model=model,
        length=len(audio),
        options=options,
        progress=progress,
        loudness_of=reference,
        guide=encoded.guide,
    )


class FittedEncoding(NamedTuple):
    """What ``encode_fitted`` gives: the latent, the semitones the input was shifted by, and the
    fitted input's pitch track when asked for (pitch-guided sampling)."""

    latent: torch.Tensor
    semitones: int
    guide: PitchGuide | None = None


def encode_fitted(
    audio: np.ndarray, *, model: ModelLike = DEFAULT_MODEL, transpose: int | str = AUTO, guide: bool = False
) -> FittedEncoding:
    """``encode`` after ``fit_input`` (the model's training level and register); ``guide`` also
    tracks the pitch of the audio the encoder read, which ``decode(guide=...)`` follows."""
    model = _as_model(model)
    fitted = fit_input(audio, model.input_level_db, transpose)
    track = PitchGuide.of(fitted.audio) if guide else None
    return FittedEncoding(encode(fitted.audio, model=model), fitted.semitones, track)


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
    *,
    model: ModelLike = DEFAULT_MODEL,
    keep: float = 3.5,
    crossfade: float = 1.5,
    options: GenerationOptions | None = None,
    progress: Progress | None = None,
    transpose: int | str = AUTO,
    match_loudness: bool = True,
) -> np.ndarray:
    """Blend two pieces in latent space and decode the blend with ``domain``'s decoder.

    Keeps the first ``keep`` seconds of ``first``'s latent, crossfades the next ``crossfade``
    seconds of it with the first ``crossfade`` seconds of ``second``'s, then continues with the
    rest of ``second``. Each piece is fitted on its own, as in ``translate``; the result is at
    the loudness of the two inputs together unless ``match_loudness`` is False.
    """
    model = _as_model(model)
    model.check_domain(domain)
    latent, _ = encode_blend(first, second, model=model, keep=keep, crossfade=crossfade, transpose=transpose)
    reference = np.concatenate([first, second]) if match_loudness else None
    return decode(latent, domain, model=model, options=options, progress=progress, loudness_of=reference)


def encode_blend(
    first: np.ndarray,
    second: np.ndarray,
    *,
    model: ModelLike = DEFAULT_MODEL,
    keep: float = 3.5,
    crossfade: float = 1.5,
    transpose: int | str = AUTO,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The blended latent of ``blend``, without decoding (encode once, decode in many domains),
    and the semitones each piece was shifted by.

    Warns (``BlendWarning``) when ``keep`` is longer than ``first``: the blend is then all of it
    followed by ``second`` with no crossfade, which is rarely what was meant.
    """
    if keep < 0 or crossfade < 0:
        raise ValueError("keep and crossfade must be >= 0 seconds")
    model = _as_model(model)
    for name, audio in (("first input", first), ("second input", second)):
        check_audible(audio, name, model.config.pool)
    length = len(first) / SAMPLE_RATE
    if keep > length:
        warnings.warn(
            f"keep ({keep:g} s) is longer than the first input ({length:.2f} s): the blend plays all of "
            "it, then the second input with no crossfade; keep less of it",
            BlendWarning,
            stacklevel=2,
        )
    (a, a_shift, _), (b, b_shift, _) = (
        encode_fitted(audio, model=model, transpose=transpose) for audio in (first, second)
    )
    frame_rate = SAMPLE_RATE / model.config.pool
    latent = blend_latents(a, b, round(keep * frame_rate), round(crossfade * frame_rate))
    return latent, (a_shift, b_shift)
