"""Evaluation: the paper's metrics, scores against parallel references, studies and a report.

One module per job, so the listing reads as the method:

* :mod:`.pitch` - pyin pitch contours; the paper's NCC at the optimal shift and DTW + correlation,
  always beside absolute measures (raw pitch accuracy, DTW error in cents), because zero-mean
  NCC cannot see a transposition.
* :mod:`.notes` - pitch against the notes of the score the test audio was rendered from: raw
  pitch and chroma accuracy (mir_eval) and the median offset in semitones, which sees a flat output.
* :mod:`.transcribe` - the transcribe-and-render baseline: pyin notes rendered in the target's
  General MIDI program, what a user could do instead of translating.
* :mod:`.reference` - content and timbre against a parallel rendering of the same notes:
  multi-resolution STFT and log-mel distance, chroma similarity, onset F-measure.
* :mod:`.classifier` - a small log-mel CNN that tells domains apart, trained here and stored next
  to the model, to count how often a translation is heard as its target instrument.
* :mod:`.lineup` - the paper's listening test: autoencoding plus translations, shuffled, with a key.
* :mod:`.embedding` - the paper's NSynth study: single notes, latent cosine similarity.
* :mod:`.report` - all of the above over a parallel test set, as PNG plots, HTML and JSON.
* :mod:`.plots` - the PNG figures (spectrograms, contours, per-domain bars, similarity grids).
* :mod:`.files` - pairing outputs with inputs in folders, shared by the batch commands.

Everything scores through the public API (``load_model``, ``translate``, ``encode``,
``load_audio``), as a user's script would.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MusicTranslateError


class EvaluationError(MusicTranslateError):
    """An evaluation that cannot be computed from what it was given (no pitch, no pairs, no tool)."""


def optional_import(name: str) -> ModuleType:
    """Import a package of the ``evaluate`` extra (mir_eval, matplotlib), or say how to get it
    in one line instead of an ImportError traceback."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise EvaluationError(
            f"evaluation needs {name.split('.')[0]}; install it with: pip install 'musictranslate[evaluate]'"
        ) from None


__all__ = ["EvaluationError", "optional_import"]
