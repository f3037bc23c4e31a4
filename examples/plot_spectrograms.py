"""The README's picture: log-mel spectrograms of the example whistle and of its translation.

make demo && python examples/plot_spectrograms.py out/whistle_piano.wav docs/whistle_piano.png
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import librosa
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musictranslate import load_audio  # noqa: E402

RATE = 16_000


def log_mel(path: Path):
    mel = librosa.feature.melspectrogram(y=load_audio(path), sr=RATE, n_fft=1024, hop_length=256, n_mels=80)
    return librosa.power_to_db(mel, ref=1.0, top_db=80)


def main(translation: Path, out: Path) -> None:
    whistle = Path(__file__).resolve().parent / "whistle.wav"
    figure, axes = plt.subplots(2, 1, figsize=(7, 3.6), sharex=True, constrained_layout=True)
    for ax, path, title in ((axes[0], whistle, "input: whistle.wav"), (axes[1], translation, "--to piano")):
        shown = log_mel(path)
        librosa.display.specshow(
            shown, sr=RATE, hop_length=256, x_axis="time", y_axis="mel", fmax=8000, ax=ax
        )
        ax.set_title(title, fontsize=9, loc="left")
        ax.label_outer()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=80)
    # a 64-colour palette keeps the README's picture small (the colour map has few hues anyway)
    Image.open(buffer).convert("RGB").quantize(64).save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
