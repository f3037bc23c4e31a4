"""Fast autoregressive generation ("fast WaveNet") and seamless segmenting of long files.

Recomputing a WaveNet's whole receptive field per output sample is thousands of times too slow.
``FastDecoder`` keeps, for every layer, the last ``dilation`` inputs of that layer in a ring
buffer, so one step costs one small matmul per layer. The step is written with plain
``F.linear`` on weights taken from a trained ``Decoder``: the two taps of each dilated conv are
one matmul, the conditioning is projected once per latent frame (every ``pool`` samples) with the
tap biases folded in, and the skip outputs of all layers are summed by one matmul at the end.

Long input is cut into segments that are generated side by side as one batch. Each segment first
generates a warm-up from the latent of the audio before it (discarded), then its own span plus a
short tail that is crossfaded into the next segment, so seams do not click.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model import START_CLASS, Decoder

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with generated sample counts."""


@dataclass(frozen=True)
class GenerationOptions:
    """How to turn a latent into audio. ``temperature=0`` means argmax (greedy)."""

    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 64
    min_segment_frames: int = 10
    warmup_frames: int | None = None  # None: enough frames to fill the receptive field
    crossfade: int = 400  # samples
    dtype: torch.dtype = torch.float32
    device: str = "cpu"


class FastDecoder:
    """A decoder's weights rearranged for cached, one-sample-at-a-time generation."""

    def __init__(self, decoder: Decoder, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        cfg = decoder.cfg
        r = cfg.residual_channels

        def w(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device=device, dtype=dtype).contiguous()

        self.cfg, self.dtype, self.device = cfg, dtype, device
        self.dilations = list(decoder.dilations)
        self.embed = w(decoder.embed.weight)
        # conv weight (2r, r, 2): tap 0 multiplies x[t - d], tap 1 multiplies x[t]
        self.taps = [w(torch.cat([c.weight[:, :, 0], c.weight[:, :, 1]], dim=1)) for c in decoder.dilated]
        tap_bias = torch.cat([c.bias for c in decoder.dilated])
        self.cond_weight = w(decoder.condition.weight[:, :, 0])
        self.cond_bias = w(decoder.condition.bias + tap_bias)
        self.res_weight = [w(o.weight[:r, :, 0]) for o in decoder.out]
        self.res_bias = [w(o.bias[:r]) for o in decoder.out]
        self.skip_weight = w(torch.cat([o.weight[r:, :, 0] for o in decoder.out], dim=1))
        self.skip_bias = w(torch.stack([o.bias[r:] for o in decoder.out]).sum(0))
        self.head1 = (w(decoder.head1.weight[:, :, 0]), w(decoder.head1.bias))
        self.head2 = (w(decoder.head2.weight[:, :, 0]), w(decoder.head2.bias))

    def new_state(self, batch: int) -> list[torch.Tensor]:
        """Ring buffers of each layer's past inputs, zero like the causal conv's padding."""
        r = self.cfg.residual_channels
        return [torch.zeros(batch, d, r, dtype=self.dtype, device=self.device) for d in self.dilations]

    def project_condition(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """One latent frame ``(batch, latent_dim)`` -> each layer's conditioning ``(batch, 2r)``."""
        cond = F.linear(frame.to(self.dtype), self.cond_weight, self.cond_bias)
        return list(cond.split(2 * self.cfg.residual_channels, dim=1))

    def step(
        self, state: list[torch.Tensor], t: int, previous: torch.Tensor, condition: list[torch.Tensor]
    ) -> torch.Tensor:
        """Logits ``(batch, classes)`` for sample ``t`` given sample ``t - 1`` (classes)."""
        r = self.cfg.residual_channels
        x = self.embed[previous]
        gated = []
        for buffer, d, taps, cond, res_w, res_b in zip(
            state, self.dilations, self.taps, condition, self.res_weight, self.res_bias, strict=True
        ):
            slot = t % d
            a = torch.addmm(cond, torch.cat([buffer[:, slot], x], dim=1), taps.t())
            buffer[:, slot] = x
            z = torch.tanh(a[:, :r]) * torch.sigmoid(a[:, r:])
            gated.append(z)
            x = torch.addmm(res_b, z, res_w.t(), beta=1.0).add_(x)
        skip = F.linear(torch.cat(gated, dim=1), self.skip_weight, self.skip_bias)
        h = F.relu(F.linear(F.relu(skip), *self.head1))
        return F.linear(h, *self.head2)

    @torch.inference_mode()
    def teacher_forced_logits(self, target: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes, time)`` stepping through ``target``: checks the cache."""
        batch, length = target.shape
        state = self.new_state(batch)
        previous = torch.full((batch,), START_CLASS, dtype=torch.long, device=self.device)
        out = []
        for t in range(length):
            if t % self.cfg.pool == 0:
                condition = self.project_condition(latent[:, :, t // self.cfg.pool])
            out.append(self.step(state, t, previous, condition))
            previous = target[:, t]
        return torch.stack(out, dim=2)

    @torch.inference_mode()
    def sample(
        self,
        latent: torch.Tensor,
        length: int,
        sampler: Callable[[torch.Tensor], torch.Tensor],
        progress: Progress | None = None,
        progress_offset: int = 0,
        progress_total: int = 0,
    ) -> torch.Tensor:
        """Generate ``length`` samples (classes ``(batch, length)``) conditioned on ``latent``."""
        batch = latent.shape[0]
        latent = latent.to(device=self.device, dtype=self.dtype)
        state = self.new_state(batch)
        previous = torch.full((batch,), START_CLASS, dtype=torch.long, device=self.device)
        out = torch.empty(batch, length, dtype=torch.long, device=self.device)
        pool = self.cfg.pool
        for t in range(length):
            if t % pool == 0:
                condition = self.project_condition(latent[:, :, t // pool])
                if progress is not None:
                    progress(progress_offset + t * batch, progress_total)
            previous = sampler(self.step(state, t, previous, condition))
            out[:, t] = previous
        return out


class Sampler:
    """Argmax (temperature 0) or softmax sampling from a seeded generator."""

    def __init__(self, temperature: float, seed: int, device: str = "cpu") -> None:
        self.temperature = temperature
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature <= 0:
            return logits.argmax(dim=1)
        probs = torch.softmax(logits.float() / self.temperature, dim=1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)


def _crossfade_window(length: int, fade: int, fade_in: bool) -> np.ndarray:
    """Raised-cosine fades that sum to one across a seam."""
    window = np.ones(length, dtype=np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
    if fade_in:
        window[:fade] = ramp
    window[length - fade :] = ramp[::-1]
    return window


def generate(
    fast: FastDecoder,
    latent: torch.Tensor,
    length: int,
    options: GenerationOptions,
    progress: Progress | None = None,
) -> np.ndarray:
    """Decode one file's latent ``(latent_dim, frames)`` to ``length`` float samples.

    The frames are cut into equal segments, generated ``options.batch_size`` at a time; each
    segment has its own warm-up and a crossfaded tail, so memory holds one batch of decoder state
    plus the output, whatever the file's length.
    """
    from .audio import mu_law_decode

    cfg = fast.cfg
    pool, frames = cfg.pool, latent.shape[1]
    warmup = options.warmup_frames
    if warmup is None:
        warmup = math.ceil(cfg.decoder_receptive_field / pool)
    seg = max(options.min_segment_frames, math.ceil(frames / options.batch_size))
    n_segments = math.ceil(frames / seg)
    fade = min(options.crossfade, seg * pool)
    tail_frames = math.ceil(fade / pool)
    steps = (warmup + seg) * pool + fade
    span = seg * pool
    index = torch.arange(-warmup, seg + tail_frames)
    sampler = Sampler(options.temperature, options.seed, options.device)
    out = np.zeros(n_segments * span + fade, dtype=np.float32)
    total = n_segments * steps
    for first in range(0, n_segments, options.batch_size):
        ids = torch.arange(first, min(first + options.batch_size, n_segments))
        frame_ids = (ids[:, None] * seg + index[None, :]).clamp(0, frames - 1)
        batch_latent = latent[:, frame_ids].permute(1, 0, 2)
        classes = fast.sample(batch_latent, steps, sampler, progress, first * steps, total)
        audio = mu_law_decode(classes[:, warmup * pool :].cpu().numpy())
        for row, i in enumerate(ids.tolist()):
            start = i * span
            out[start : start + span + fade] += audio[row] * _crossfade_window(span + fade, fade, i > 0)
    if progress is not None:
        progress(total, total)
    return out[:length]
