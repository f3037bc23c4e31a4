"""musictranslate: translate music between instruments with a universal music translation network.

The public API is imported lazily so that ``musictranslate --help`` answers without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "translate": "translation",
    "blend": "translation",
    "encode": "translation",
    "decode": "translation",
    "fit_input": "input_fit",
    "load_model": "registry",
    "list_models": "catalog",
    "load_audio": "audio",
    "save_audio": "audio",
    "GenerationOptions": "generate",
    "ModelConfig": "config",
    "MusicTranslateError": "errors",
}

__all__ = [
    "__version__",
    "translate",
    "blend",
    "encode",
    "decode",
    "fit_input",
    "load_model",
    "list_models",
    "load_audio",
    "save_audio",
    "GenerationOptions",
    "ModelConfig",
    "MusicTranslateError",
]

if TYPE_CHECKING:
    from .audio import load_audio, save_audio
    from .catalog import list_models
    from .config import ModelConfig
    from .errors import MusicTranslateError
    from .generate import GenerationOptions
    from .input_fit import fit_input
    from .registry import load_model
    from .translation import blend, decode, encode, translate


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
