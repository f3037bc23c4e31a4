"""Errors a user can act on.

Library code raises these with a one-line message that names the file or value and says what to
do; the CLI prints the message and exits non-zero without a traceback.
"""

from __future__ import annotations


class MusicTranslateError(Exception):
    """Base class: a failure caused by input, models or the environment, not by a bug."""

    exit_code = 1


class AudioError(MusicTranslateError):
    """An audio file that cannot be read, is empty, silent, too short or not finite."""


class ModelError(MusicTranslateError):
    """A model that is missing, tampered with, of an unknown format or of the wrong shape."""


class DomainError(MusicTranslateError):
    """A domain the model has no decoder for."""


class OutputError(MusicTranslateError):
    """An output that cannot be written or would overwrite something."""


class UsageError(MusicTranslateError):
    """Arguments that cannot work (together): a bad option value, ``-o FILE`` with several outputs.

    Exit status 2, like argument-parsing errors, so scripts can tell "you called it wrong" from
    "this input or output failed".
    """

    exit_code = 2


class TrainingError(MusicTranslateError):
    """Training cannot start or go on: a bad resume state, a diverged loss."""


class DivergedError(TrainingError):
    """The loss or the weights stopped being finite; nothing from that step on is saved."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): library errors that
    span lines (libsndfile, safetensors, torch) must fit a one-line report."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
