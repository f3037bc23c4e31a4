"""The low-latency encoder: causal, distilled from the model's own, used by `live --low-latency`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musictranslate import TranslationStream, load_model
from musictranslate.audio import companded, mu_law_encode
from musictranslate.cli import app
from musictranslate.config import preset
from musictranslate.distill import DistillOptions, distill
from musictranslate.errors import ModelError
from musictranslate.fast_encoder import FastEncoder
from musictranslate.model import Encoder
from musictranslate.stream import StreamingEncoder
from musictranslate.translation import encode

from .conftest import make_tiny_model, tone, two_domains

runner = CliRunner()


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A tiny model with a low-latency encoder distilled for a few steps, and the result."""
    root = tmp_path_factory.mktemp("low-latency")
    folder = make_tiny_model(root / "tiny")
    card = folder / "README.md"
    card.write_text(card.read_text() + "\n## Evaluation at step 0\n\nscores\n\n## History\n\nhow it came\n")
    data = two_domains(root / "data")
    result = distill(
        load_model(folder), data, DistillOptions(steps=30, batch_size=4, lr=3e-3, checkpoint_every=10)
    )
    return folder, result


def test_a_causal_encoder_frame_hears_nothing_after_its_end() -> None:
    cfg = preset("tiny")
    torch.manual_seed(0)
    causal, centred = Encoder(cfg, causal=True).eval(), Encoder(cfg).eval()
    assert causal.context == (2 * cfg.encoder_context, 0)
    assert centred.context == (cfg.encoder_context, cfg.encoder_context)
    audio = torch.rand(1, 8 * cfg.pool) * 2 - 1
    changed = audio.clone()
    changed[:, 5 * cfg.pool :] = 0.0  # everything after frame 4
    with torch.no_grad():
        assert torch.equal(causal(audio)[..., :5], causal(changed)[..., :5])
        assert not torch.allclose(centred(audio)[..., 4], centred(changed)[..., 4])


def test_the_fast_and_streaming_encoders_keep_the_causal_maths() -> None:
    cfg = preset("tiny")
    torch.manual_seed(1)
    encoder = Encoder(cfg, causal=True).eval()
    signal = torch.from_numpy(companded(mu_law_encode(tone(0.2, 500.0))))
    with torch.no_grad():
        reference = encoder.features(signal[None])[0].t()
    offline = FastEncoder(encoder).features(signal)
    assert torch.allclose(offline, reference, atol=1e-5)
    streaming = StreamingEncoder(FastEncoder(encoder), block=32)
    assert streaming.lookahead == 0
    rows = [streaming.step(signal[s : s + 32])[1] for s in range(0, len(signal) - 31, 32)]
    got = torch.cat(rows)
    assert torch.allclose(got, offline[: len(got)], atol=1e-5)  # no look-ahead: every row agrees


def test_distillation_brings_the_causal_latent_towards_the_models(distilled) -> None:
    folder, result = distilled
    assert result.val_error < 0.9 * result.start_val_error
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["low_latency_encoder"]
    assert entry["provenance"]["steps"] == 30
    assert entry["provenance"]["val_error"] == pytest.approx(result.val_error, abs=1e-4)
    card = (folder / "README.md").read_text()
    assert "## Low-latency encoder" in card  # and the scores, which do not use it, stay
    assert card.index("## Low-latency encoder") < card.index("## Evaluation at step 0\n\nscores")
    assert card.index("scores") < card.index("## History\n\nhow it came")
    loaded = load_model(folder, low_latency=True)
    assert loaded.encoder.causal and loaded.encoder.context[1] == 0
    # offline encoding (chunked) equals the training encoder's maths
    audio = tone(0.3, 330.0)
    signal = torch.from_numpy(companded(mu_law_encode(audio)))
    with torch.no_grad():
        expected = loaded.encoder(signal[None])[0]
    assert torch.allclose(encode(audio, model=loaded, dtype="float32"), expected, atol=1e-5)


def test_a_low_latency_stream_waits_only_a_frame_and_a_block(distilled) -> None:
    folder, _ = distilled
    model = load_model(folder, low_latency=True)
    stream = TranslationStream("piano", model=model, block=40)
    pool = model.config.pool
    assert stream.latency_samples == pool + 40 - 1
    assert len(stream.process(np.zeros(pool - 1, dtype=np.float32))) == 0
    assert len(stream.process(np.zeros(40, dtype=np.float32))) == pool
    audio = tone(0.4, 300.0)
    whole = _chunks(model, audio, len(audio))
    for chunk in (1, 37, 4000):
        assert np.array_equal(_chunks(model, audio, chunk), whole), chunk


def _chunks(model, audio: np.ndarray, chunk: int) -> np.ndarray:
    stream = TranslationStream("piano", model=model, temperature=1.0, seed=3, block=40)
    pieces = [stream.process(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    return np.concatenate([*pieces, stream.flush()])


def test_distill_command_goes_on_from_the_last_run(distilled, tmp_path: Path) -> None:
    folder, _ = distilled
    data = two_domains(tmp_path / "data")
    result = runner.invoke(
        app,
        ["distill", str(data), "--model", str(folder), "--steps", "5", "--checkpoint-every", "5", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    provenance = json.loads((folder / "manifest.json").read_text())["low_latency_encoder"]["provenance"]
    assert provenance["steps"] == 35


def test_low_latency_without_a_distilled_encoder_is_a_one_line_error(
    registry: Path, wav: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="no low-latency encoder"):
        load_model(registry / "tiny", low_latency=True)
    out = tmp_path / "out.wav"
    result = runner.invoke(
        app,
        ["live", "--to", "piano", "--input", str(wav), "--output", str(out), "--low-latency",
         "--model", str(registry / "tiny"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "musictranslate distill" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_live_low_latency_translates_a_file_with_a_shorter_buffer(
    distilled, wav: Path, tmp_path: Path
) -> None:
    folder, _ = distilled
    out = tmp_path / "live.wav"
    result = runner.invoke(
        app,
        ["live", "--to", "flute", "--input", str(wav), "--output", str(out), "--low-latency",
         "--model", str(folder)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "encoder look-ahead 0" in result.output and "buffer 40 ms" in result.output
    assert out.is_file()
