"""Translation as a stream: audio chunks of any size in, translated chunks out.

The encoder is non-causal: a latent frame depends on ``cfg.encoder_context`` samples after it
(its look-ahead), and the decoder needs a whole frame's latent before it can play the frame. So
a stream holds two kinds of state between calls:

- the encoder's, layer by layer (``StreamingEncoder``): every step advances *every* layer by
  ``block`` positions, each layer lagging the one before by its own look-ahead, so each layer
  keeps only the last ``2 x look-ahead`` rows of its input. Nothing is recomputed, and no
  layer waits for more than ``block`` new samples;
- the decoder's (``generate.FrameStepper``): the rings, the last sample and the sampler's
  position.

Every computation runs on blocks of the same shape, whatever the chunks the caller passes, so
the output is the same for any chunking -- bit for bit, at a fixed seed. The first sample of a
frame leaves ``latency_samples`` after it came in (the frame, the look-ahead and at most one
block); ``flush`` feeds silence to finish the last frame, so the output is as long as the input.

Differences from ``translate``: no input fit (the level is set by ``gain_db``, the register is
left as it is: both are chosen from the whole file there), and the end of the input is padded
with silence rather than with the convolution's zero padding.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .audio import companded, mu_law_decode, mu_law_encode
from .catalog import DEFAULT_MODEL
from .config import DEFAULT_MIN_P, DEFAULT_TEMPERATURE
from .fast_encoder import FastEncoder
from .generate import FastDecoder, FrameStepper, Sampler
from .registry import Model, load_model
from .runtime import native_bf16
from .speed import DTypeLike, GenerationOptions, plan_generation, resolve_dtype

ENCODER_BLOCK = 400
"""Samples every encoder layer advances per step (25 ms): the granularity of the latency, and
small enough not to add much of it; larger blocks cost less dispatch per sample."""


class StreamingEncoder:
    """``FastEncoder``'s maths on a stream: per-sample features, ``block`` rows per step."""

    def __init__(self, encoder: FastEncoder, block: int = ENCODER_BLOCK) -> None:
        self.fast, self.block, self.dtype = encoder, block, encoder.dtype
        weight, _, padding = encoder.input
        channels = weight.shape[0]
        # each stage: the rows it reads (before, after) a position, and the last ``before + after``
        # rows of its input (zeros: the convolutions' zero padding before the stream starts)
        paddings = [padding] + [layer[1] for layer in encoder.layers]
        self.history = [torch.zeros(sum(padding), 1, dtype=self.dtype)] + [
            torch.zeros(sum(p), channels, dtype=self.dtype) for p in paddings[1:]
        ]
        self.lookaheads = [after for _, after in paddings]
        self.lookahead = sum(self.lookaheads)
        self.position = 0  # input samples consumed, in whole blocks

    @torch.inference_mode()
    def step(self, signal: torch.Tensor) -> tuple[int, torch.Tensor]:
        """``block`` companded samples -> (position, features ``(block, latent_dim)`` float32):
        the features of positions ``position .. position + block``; negative ones are the
        stream's start-up and mean nothing."""
        rows = signal.to(self.dtype)[:, None]
        for stage, history in enumerate(self.history):
            window = torch.cat([history, rows])
            self.history[stage] = window[len(window) - len(history) :]
            rows = self._stage(stage, window)
            start = self.position - sum(self.lookaheads[: stage + 1])
            if start < 0:  # positions before the stream: the next layer's zero padding
                rows[: min(-start, len(rows))] = 0
        weight, bias = self.fast.project
        features = torch.addmm(bias, rows, weight).float()
        position = self.position - self.lookahead
        self.position += self.block
        return position, features

    def _stage(self, stage: int, window: torch.Tensor) -> torch.Tensor:
        """One layer's ``block`` output rows from its input ``window`` (its padding both sides)."""
        block = self.block
        if stage == 0:
            weight, bias, _ = self.fast.input
            return F.conv1d(window.t()[None], weight, bias)[0].t().contiguous()
        dilation, (before, _), taps, tap_bias, mix, mix_bias = self.fast.layers[stage - 1]
        relu = window.relu()
        u = torch.addmm(tap_bias, relu[:block], taps[0])
        for i, tap in enumerate(taps[1:], start=1):
            u.addmm_(relu[i * dilation : i * dilation + block], tap)
        return window[before : before + block].addmm(u.relu_(), mix).add_(mix_bias)


class TranslationStream:
    """Translate a live input into ``domain``: ``process(chunk)`` returns what is ready. The
    arguments follow ``translate(audio, domain, model=...)``, without the audio.

    ``temperature``, ``min_p`` and ``seed`` as in ``GenerationOptions``. The decoder steps one
    stream with the step and dtype the plan picks for a batch of one (``speed.plan_generation``:
    the fused step where numba is available, its weights in bfloat16 where the CPU has native
    bf16); ``dtype`` fixes the decoder's dtype, ``encoder_dtype`` the encoder's. The output is
    mono float32 at the model's rate, ``latency_samples`` behind the input at most (before any
    device buffer).
    """

    def __init__(
        self,
        domain: str,
        *,
        model: Model | str | os.PathLike = DEFAULT_MODEL,
        temperature: float = DEFAULT_TEMPERATURE,
        min_p: float = DEFAULT_MIN_P,
        seed: int = 0,
        gain_db: float = 0.0,
        block: int = ENCODER_BLOCK,
        dtype: DTypeLike | None = None,
        encoder_dtype: DTypeLike | None = None,
    ) -> None:
        self.model = model if isinstance(model, Model) else load_model(model)
        self.model.check_domain(domain)
        cfg = self.model.config
        self.pool, self.block, self.gain = cfg.pool, block, float(10 ** (gain_db / 20))
        automatic = torch.bfloat16 if native_bf16() else torch.float32
        fast_encoder = FastEncoder(self.model.encoder, resolve_dtype(encoder_dtype, default=automatic))
        self.encoder = StreamingEncoder(fast_encoder, block)
        plan = plan_generation(cfg, 1, GenerationOptions(batch_size=1, workers=1, dtype=dtype))
        fast = FastDecoder(self.model.decoder(domain))
        sampler = Sampler(temperature, seed, min_p=min_p)
        self.decoder = FrameStepper(fast, 1, sampler, plan.dtype, plan.engine)
        self.pending = np.zeros(0, dtype=np.float32)  # input not yet a whole block
        self.features = torch.zeros(0, cfg.latent_dim)  # of the frame being filled
        self.received = 0  # input samples
        self.emitted = 0  # output samples

    @property
    def latency_samples(self) -> int:
        """Worst case, in samples: a whole frame, the encoder's look-ahead and a partial block."""
        return self.pool + self.encoder.lookahead + self.block - 1

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed mono float samples; return the translated samples that are now ready."""
        return self.decode(self.encode(chunk))

    def flush(self) -> np.ndarray:
        """Finish the stream with silence: the rest of the output, up to the input's length."""
        return self.decode(self.encode_end())

    def encode(self, chunk: np.ndarray) -> list[torch.Tensor]:
        """The first half of ``process``: the latent frames ``(1, latent_dim)`` that ``chunk``
        completes. ``decode`` may run in another thread, one call behind (``live.py`` does)."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.received += len(chunk)
        self.pending = np.concatenate([self.pending, chunk])
        whole = len(self.pending) // self.block * self.block
        blocks, self.pending = self.pending[:whole], self.pending[whole:]
        return [
            frame for i in range(0, whole, self.block) for frame in self._frames(blocks[i : i + self.block])
        ]

    def encode_end(self) -> list[torch.Tensor]:
        """``encode`` of the silence that completes the last frame (the end of the input)."""
        received = self.received
        frames = -(-received // self.pool)
        consumed = self.encoder.position + len(self.pending)
        target = -(-(frames * self.pool + self.encoder.lookahead) // self.block) * self.block
        latents = self.encode(np.zeros(max(0, target - consumed), dtype=np.float32))
        self.received = received
        return latents

    def decode(self, frames: list[torch.Tensor]) -> np.ndarray:
        """The second half of ``process``: the audio of ``frames``, never past the input's end."""
        out = [mu_law_decode(self.decoder.run(frame, self.pool)[0].numpy()) for frame in frames]
        audio = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        audio = audio[: max(0, self.received - self.emitted)]
        self.emitted += len(audio)
        return audio

    def _frames(self, samples: np.ndarray) -> list[torch.Tensor]:
        """One encoder block: the latent frames it completes."""
        classes = mu_law_encode(samples * self.gain)
        position, features = self.encoder.step(torch.from_numpy(companded(classes)))
        if position < 0:
            features = features[min(-position, len(features)) :]
        frames = []
        while len(features):
            take = min(self.pool - len(self.features), len(features))
            self.features = torch.cat([self.features, features[:take]])
            features = features[take:]
            if len(self.features) == self.pool:
                frames.append(self.features.mean(0, keepdim=True))
                self.features = self.features[:0]
        return frames
