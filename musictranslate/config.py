"""Architecture hyper-parameters and named presets.

The config travels with the weights (it is written into every model's manifest), so a model folder
can be loaded without editing code — the same idea as whisper's ``ModelDimensions``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SAMPLE_RATE = 16_000
MU = 255
N_CLASSES = MU + 1
DEFAULT_TEMPERATURE = 0.3
"""Sampling temperature of translate, blend and evaluate unless told. Why below 1 (the decoder's
own distribution, the paper's sampling): a cooler sampler sounded more like the target instrument
to the domain classifier and followed the notes as well or better; colder still lost the notes.
The measurements over seeds are in the default model's card (models/default/README.md)."""
MAX_PITCH_CANDIDATES = 16
"""The most candidates per row pitch-guided sampling (``--follow-pitch``) takes: a typo must not
ask for a hundred times the work."""
DEFAULT_MIN_P = 0.0
"""Min-p truncation of the sampled distribution unless told (0: none, the paper's sampling)."""
DEFAULT_RETUNE = True
"""Translations are retuned onto the input's pitch unless told (``retune.py``): the decoders drift
off the notes, and the fix costs one pitch track of the output."""
CLASSIFIER_STEPS = 4000
CLASSIFIER_MAX_SECONDS = 3600.0
"""The domain classifier's training (``evaluate/classifier.py``) unless told: steps, and the
audio read per domain and data folder in seconds. Twice the first recipe's of each: with half,
it told the sustained instruments apart too rarely to judge a translation by (the default model's
card, History)."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder, the decoders and the confusion net (paper numbers by default)."""

    # encoder: non-causal WaveNet-like stack
    encoder_blocks: int = 3
    encoder_layers: int = 10
    encoder_channels: int = 128
    encoder_kernel: int = 3
    latent_dim: int = 64
    pool: int = 800  # samples per latent frame: 50 ms at 16 kHz -> 20 Hz latent
    # decoders: causal WaveNet with gated units
    decoder_blocks: int = 4
    decoder_layers: int = 10
    residual_channels: int = 128
    skip_channels: int = 128
    # domain confusion network
    confusion_channels: int = 128
    confusion_kernel: int = 3
    n_classes: int = N_CLASSES

    @property
    def decoder_receptive_field(self) -> int:
        """Samples of past audio one decoder output can see (kernel 2, dilations 1..512)."""
        return self.decoder_blocks * (2**self.decoder_layers - 1) + 1

    @property
    def encoder_context(self) -> int:
        """Samples each side of a position that reach the latent (kernel 3 stacks + input conv)."""
        half = (self.encoder_kernel - 1) // 2
        return self.encoder_blocks * half * (2**self.encoder_layers - 1) + half

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a manifest; unknown keys are an error so a newer format is not misread."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown architecture keys: {', '.join(sorted(unknown))}")
        return cls(**values)


PRESETS: dict[str, ModelConfig] = {
    # the paper's sizes
    "paper": ModelConfig(),
    # CPU-friendly: what the shipped default model uses (docs/design.md, "Training cost")
    "small": ModelConfig(
        encoder_blocks=2,
        encoder_layers=10,
        encoder_channels=64,
        decoder_blocks=2,
        decoder_layers=10,
        residual_channels=64,
        skip_channels=64,
        confusion_channels=64,
    ),
    # for tests: builds and runs in milliseconds
    "tiny": ModelConfig(
        encoder_blocks=1,
        encoder_layers=3,
        encoder_channels=8,
        latent_dim=4,
        pool=80,
        decoder_blocks=1,
        decoder_layers=4,
        residual_channels=8,
        skip_channels=8,
        confusion_channels=8,
    ),
}


def preset(name: str) -> ModelConfig:
    """Return a named preset, or raise with the list of valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
