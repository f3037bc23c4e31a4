"""Regenerate ``examples/whistle.wav``: a synthetic whistled tune, the unseen source domain.

Pure numpy (no FluidSynth, no soundfont), deterministic, ~8 s of 16 kHz mono 16-bit PCM at
-3 dBFS peak. The tune is written out by hand in ``musictranslate.recipes.whistle.MELODY`` so it
is in no training split. Pass ``--midi data/midi/<test piece>.mid`` to whistle a test-split tune
instead (its instrument renders in ``data/test/<domain>/`` are then the parallel reference).

    python examples/make_whistle.py [--out examples/whistle.wav] [--midi M] [--seconds 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musictranslate.recipes.whistle import main

if __name__ == "__main__":
    default_out = str(Path(__file__).resolve().parent / "whistle.wav")
    args = sys.argv[1:] if "--out" in sys.argv else ["--out", default_out, *sys.argv[1:]]
    raise SystemExit(main(args))
