"""The paper's training step: one batch of one domain, the confusion net's step, then the
encoder's and that domain's decoder's.

First the confusion net C takes a step to recognise the domain each encoder input came from,
from the (detached) latent; then the encoder and the step's decoder take a step on
``CE(reconstruction) - lambda * CE(C(latent), domain)`` against the updated C, so the encoder
learns to hide the domain while the decoder learns to render it. With the encoder frozen
(``add-domain``) only the decoder's reconstruction step is left. ``Trainer`` owns the modules and
optimisers that the step changes, and hands their state to the checkpoint as tensors and JSON.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .distributed import Distributed
from .errors import DivergedError
from .model import ConfusionNet, Decoder, Encoder

if TYPE_CHECKING:
    from .registry import Model
    from .train import TrainOptions


class AutoEncoders(nn.Module):
    """The shared encoder and the decoder bank as one module, so DDP can wrap them together."""

    def __init__(self, encoder: Encoder, decoders: dict[str, Decoder]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoders = nn.ModuleDict(decoders)

    def forward(
        self,
        domain: str,
        encoder_input: torch.Tensor,
        target: torch.Tensor,
        past: torch.Tensor | None = None,
    ):
        latent = self.encoder(encoder_input)
        return self.decoders[domain](target, latent, past), latent


def noisy_past(target: torch.Tensor, std: float, n_classes: int) -> torch.Tensor:
    """``target``'s mu-law classes with Gaussian noise of ``std`` added on the companded scale.

    Why: in generation the decoder's past is its own sampled output, never the clean signal it was
    trained on; a decoder that has only seen clean pasts follows them and drifts off the notes,
    while one trained on noisy pasts must take the notes from the latent.
    """
    scale = (n_classes - 1) / 2
    companded = target.float() / scale - 1 + std * torch.randn(target.shape, device=target.device)
    return ((companded.clamp(-1, 1) + 1) * scale).round().long()


class Trainer:
    """Owns the modules, optimisers and one training step."""

    def __init__(
        self,
        config: ModelConfig,
        domains: list[str],
        options: TrainOptions,
        dist: Distributed,
        encoder: Encoder | None = None,
        train_encoder: bool = True,
    ) -> None:
        torch.manual_seed(options.seed)
        self.config, self.domains, self.options, self.dist = config, domains, options, dist
        self.train_encoder = train_encoder
        self.first_step = 0  # where this optimiser started: the learning-rate ramp counts from it
        device = dist.device
        encoder = encoder or Encoder(config)
        encoder.requires_grad_(train_encoder)
        self.autoencoders = AutoEncoders(encoder, {d: Decoder(config) for d in domains}).to(device)
        self.confusion = ConfusionNet(config, len(domains)).to(device)
        self.ae = dist.wrap(self.autoencoders, partly_used=True)
        self.conf = dist.wrap(self.confusion)
        params = [p for p in self.autoencoders.parameters() if p.requires_grad]
        self.ae_opt = torch.optim.Adam(params, lr=options.lr)
        self.conf_opt = torch.optim.Adam(self.confusion.parameters(), lr=options.lr)

    def set_lr(self, step: int) -> None:
        lr = self.options.lr * self.options.lr_decay ** (step // self.options.lr_decay_every)
        lr *= min(1.0, (step - self.first_step + 1) / (self.options.warmup_steps or 1))
        for opt in (self.ae_opt, self.conf_opt):
            for group in opt.param_groups:
                group["lr"] = lr

    def _autocast(self):
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.options.bf16)

    def step(
        self,
        step: int,
        domain: int,
        input_domains: torch.Tensor,
        encoder_input: torch.Tensor,
        target: torch.Tensor,
    ) -> dict:
        """One confusion step then one autoencoder step; returns the losses as floats.

        ``domain`` names the decoder (the target's domain); ``input_domains`` the domain each
        encoder input came from, which the confusion net learns to tell and the encoder to hide.
        """
        device, name = self.dist.device, self.domains[domain]
        encoder_input, target = encoder_input.to(device), target.to(device)
        labels = input_domains.to(device)
        self.set_lr(step)
        self.autoencoders.train()
        with self._autocast():
            past = None
            if self.options.decoder_noise > 0:
                past = noisy_past(target, self.options.decoder_noise, self.config.n_classes)
            logits, latent = self.ae(name, encoder_input, target, past)
        stats: dict = {"domain": name, "lr": self.ae_opt.param_groups[0]["lr"]}
        if self.train_encoder:
            self.conf_opt.zero_grad(set_to_none=True)
            with self._autocast():
                conf_logits = self.conf(latent.detach())
            conf_loss = F.cross_entropy(conf_logits.float(), labels)
            conf_loss.backward()
            nn.utils.clip_grad_norm_(self.confusion.parameters(), self.options.grad_clip)
            self.conf_opt.step()
            stats["confusion"] = conf_loss.item()
            stats["confusion_acc"] = (conf_logits.argmax(1) == labels).float().mean().item()
        recon = F.cross_entropy(logits.float(), target)
        loss = recon
        if self.train_encoder:
            with self._autocast():
                adversary = F.cross_entropy(self.confusion(latent).float(), labels)
            loss = recon - self.options.confusion_weight * adversary
        if not torch.isfinite(loss):
            raise DivergedError(f"loss became {loss.item()} at step {step + 1}")
        self.ae_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.autoencoders.parameters(), self.options.grad_clip)
        self.ae_opt.step()
        stats["reconstruction"] = recon.item()
        return stats

    def start_decoder_from(self, model: Model, domain: str) -> None:
        """Begin ``domain``'s decoder from ``model``'s trained weights instead of fresh ones."""
        self.autoencoders.decoders[domain].load_state_dict(model.decoder(domain).state_dict())

    @torch.no_grad()
    def check_finite(self, step: int) -> None:
        """Refuse to checkpoint weights that overflowed although the last loss was still finite."""
        modules = itertools.chain(self.autoencoders.named_parameters(), self.confusion.named_parameters())
        for name, parameter in modules:
            if not torch.isfinite(parameter).all():
                raise DivergedError(f"weight {name} became non-finite at step {step}")

    @torch.no_grad()
    def validate(self, batches: list[tuple]) -> dict[str, float]:
        """Mean reconstruction loss of fixed validation batches (items of :class:`DomainBatches`),
        per domain, without augmentation."""
        self.autoencoders.eval()
        losses: dict[str, list[float]] = {}
        for domain, _, encoder_input, target in batches:
            name = self.domains[domain]
            with self._autocast():
                logits, _ = self.autoencoders(
                    name, encoder_input.to(self.dist.device), target.to(self.dist.device)
                )
            loss = F.cross_entropy(logits.float(), target.to(self.dist.device)).item()
            losses.setdefault(name, []).append(loss)
        return {name: sum(values) / len(values) for name, values in losses.items()}

    # ---- checkpoint state: tensors (safetensors) + JSON, never pickle -------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"model.{k}": v for k, v in self.autoencoders.state_dict().items()}
        tensors |= {f"confusion.{k}": v for k, v in self.confusion.state_dict().items()}
        groups = {}
        for name, opt in (("ae_opt", self.ae_opt), ("conf_opt", self.conf_opt)):
            state = opt.state_dict()
            for index, values in state["state"].items():
                for key, value in values.items():
                    tensors[f"{name}.{index}.{key}"] = torch.as_tensor(value)
            groups[name] = state["param_groups"]
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, groups

    def load_state(self, tensors: dict[str, torch.Tensor], groups: dict) -> None:
        def prefixed(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.autoencoders.load_state_dict(prefixed("model."))
        self.confusion.load_state_dict(prefixed("confusion."))
        for name, opt in (("ae_opt", self.ae_opt), ("conf_opt", self.conf_opt)):
            state: dict[int, dict] = {}
            for key, value in prefixed(f"{name}.").items():
                index, field_name = key.split(".", 1)
                state.setdefault(int(index), {})[field_name] = value
            opt.load_state_dict({"state": state, "param_groups": groups[name]})
