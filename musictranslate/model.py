"""The universal music translation network: shared encoder, WaveNet decoders, confusion net.

Everything here is a plain torch module with a teacher-forced, fully parallel forward pass; it
knows nothing about files, registries or generation (fast sample-by-sample generation lives in
``generate.py`` and reuses these weights). Shapes: audio is ``(batch, time)``; latents are
``(batch, latent_dim, frames)`` with one frame per ``cfg.pool`` samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

START_CLASS = 128
"""The mu-law class of silence; it stands for the sample before the first one."""


def encoder_padding(kernel: int, dilation: int, causal: bool) -> tuple[int, int]:
    """Zeros before and after the input of a conv of ``kernel`` taps ``dilation`` apart: centred
    (as many samples ahead as behind), or causal (none ahead), so it sees no future at all."""
    span = dilation * (kernel - 1)
    return (span, 0) if causal else (span // 2, span - span // 2)


class EncoderLayer(nn.Module):
    """ReLU -> dilated conv -> ReLU -> 1x1 conv, added to the input by the caller."""

    def __init__(self, channels: int, kernel: int, dilation: int, causal: bool = False) -> None:
        super().__init__()
        self.padding = encoder_padding(kernel, dilation, causal)
        self.dilated = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mix(F.relu(self.dilated(F.pad(F.relu(h), self.padding))))


class Encoder(nn.Module):
    """WaveNet-like stack mapping audio to a domain-independent latent at 20 Hz.

    The shipped encoder is non-causal: each latent frame also hears ``cfg.encoder_context``
    samples after it, which a live stream has to wait for. ``causal=True`` builds the same
    weights with every conv looking only back, so a frame needs nothing after its own last
    sample (the low-latency encoder of ``live``, distilled from a non-causal one: ``distill.py``).
    """

    def __init__(self, cfg: ModelConfig, causal: bool = False) -> None:
        super().__init__()
        self.cfg, self.causal = cfg, causal
        c, k = cfg.encoder_channels, cfg.encoder_kernel
        self.input_padding = encoder_padding(k, 1, causal)
        self.input = nn.Conv1d(1, c, k)
        self.layers = nn.ModuleList(
            EncoderLayer(c, k, 2**i, causal)
            for _ in range(cfg.encoder_blocks)
            for i in range(cfg.encoder_layers)
        )
        self.project = nn.Conv1d(c, cfg.latent_dim, 1)

    @property
    def context(self) -> tuple[int, int]:
        """Samples (before, after) a position that reach its per-sample features."""
        pads = [self.input_padding] + [layer.padding for layer in self.layers]
        return sum(before for before, _ in pads), sum(after for _, after in pads)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Per-sample latent before pooling; chunked encoding needs it to stay exact at seams."""
        h = self.input(F.pad(audio.unsqueeze(1), self.input_padding))
        for layer in self.layers:
            h = h + layer(h)
        return self.project(h)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio``: mu-law companded values in [-1, 1], length a multiple of ``cfg.pool``."""
        return F.avg_pool1d(self.features(audio), self.cfg.pool)


class Decoder(nn.Module):
    """Causal WaveNet with gated units, conditioned on the latent through per-layer 1x1 convs.

    The per-layer conditioning convs are stored as one conv (``condition``) whose output is split
    by layer, and each layer's residual and skip 1x1 convs as one conv (``out``): the same maths as
    separate modules, fewer kernels to launch, and the layout the fast generator wants.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r, s = cfg.residual_channels, cfg.skip_channels
        self.dilations = [2**i for _ in range(cfg.decoder_blocks) for i in range(cfg.decoder_layers)]
        n = len(self.dilations)
        self.embed = nn.Embedding(cfg.n_classes, r)
        self.dilated = nn.ModuleList(nn.Conv1d(r, 2 * r, 2, dilation=d) for d in self.dilations)
        self.condition = nn.Conv1d(cfg.latent_dim, n * 2 * r, 1)
        self.out = nn.ModuleList(nn.Conv1d(r, r + s, 1) for _ in self.dilations)
        self.head1 = nn.Conv1d(s, s, 1)
        self.head2 = nn.Conv1d(s, cfg.n_classes, 1)

    def forward(
        self, target: torch.Tensor, latent: torch.Tensor, past: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``(batch, classes, time)``; logit ``t`` predicts ``target[:, t]``.

        ``target`` holds mu-law classes ``(batch, time)``; the decoder sees them shifted right by
        one, with silence before the first sample. ``past``, when given, is what it sees instead
        (a corrupted copy of ``target`` in training, so it learns to lean on the latent).
        """
        r, pool = self.cfg.residual_channels, self.cfg.pool
        length = target.shape[1]
        previous = F.pad((target if past is None else past)[:, :-1], (1, 0), value=START_CLASS)
        h = self.embed(previous).transpose(1, 2)
        conditions = self.condition(latent).split(2 * r, dim=1)
        skip = 0.0
        for dilated, out, cond, d in zip(self.dilated, self.out, conditions, self.dilations, strict=True):
            a = dilated(F.pad(h, (d, 0))) + cond.repeat_interleave(pool, dim=2)[:, :, :length]
            z = torch.tanh(a[:, :r]) * torch.sigmoid(a[:, r:])
            res_skip = out(z)
            h = h + res_skip[:, :r]
            skip = skip + res_skip[:, r:]
        return self.head2(F.relu(self.head1(F.relu(skip))))


class ConfusionNet(nn.Module):
    """Predicts the source domain from the latent; the encoder is trained to defeat it."""

    def __init__(self, cfg: ModelConfig, n_domains: int) -> None:
        super().__init__()
        c, k = cfg.confusion_channels, cfg.confusion_kernel
        self.net = nn.Sequential(
            nn.Conv1d(cfg.latent_dim, c, k, padding=k // 2),
            nn.ELU(),
            nn.Conv1d(c, c, k, padding=k // 2),
            nn.ELU(),
            nn.Conv1d(c, n_domains, 1),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Logits over domains ``(batch, n_domains)``, averaged over time."""
        return self.net(latent).mean(dim=2)
