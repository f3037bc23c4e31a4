"""The CLI end to end on a tiny registry model: translate, blend, models, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from musictranslate.cli import app

from .conftest import tone

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_translate_end_to_end(registry: Path, wav: Path) -> None:
    out = wav.with_name("out.wav")
    result = run("translate", wav, "--to", "piano", "--model", "tiny", "--models", registry, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (8000,)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_translate_default_output_name_and_no_overwrite(registry: Path, wav: Path) -> None:
    args = ("translate", wav, "--to", "flute", "-m", "tiny", "--models", registry, "-q")
    assert run(*args).exit_code == 0
    out = wav.with_name("tune_flute.wav")
    assert out.is_file()
    again = run(*args)
    assert again.exit_code == 1 and "--force" in again.output
    assert run(*args, "--force").exit_code == 0


def test_same_seed_same_output(registry: Path, wav: Path) -> None:
    outs = []
    for i, seed in enumerate((3, 3, 4)):
        out = wav.with_name(f"s{i}.wav")
        run(
            "translate",
            wav,
            "--to",
            "piano",
            "-m",
            "tiny",
            "--models",
            registry,
            "-o",
            out,
            "--seed",
            seed,
            "-q",
        )
        outs.append(sf.read(out)[0])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_blend_length_follows_the_second_input(registry: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, tone(1.0, 440), 16000)
    sf.write(b, tone(0.8, 660), 16000)
    out = tmp_path / "ab.wav"
    result = run(
        "blend",
        a,
        b,
        "--to",
        "piano",
        "-m",
        "tiny",
        "--models",
        registry,
        "-o",
        out,
        "--keep",
        "0.5",
        "--crossfade",
        "0.2",
        "-q",
    )
    assert result.exit_code == 0, result.output
    # 0.5 s kept, then all 0.8 s of the second input (its first 0.2 s inside the crossfade)
    assert sf.info(out).frames == pytest.approx(16000 * 1.3, abs=200)


def test_models_lists_domains(registry: Path) -> None:
    result = run("models", "--models", registry)
    assert result.exit_code == 0
    assert "tiny" in result.output and "piano" in result.output and "flute" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (("--to", "banjo"), "known: piano, flute"),
        (("--to", "piano", "-m", "nosuch"), "not found"),
    ],
)
def test_model_side_errors_are_one_line(registry: Path, wav: Path, args, message: str) -> None:
    base = ["translate", wav, "--models", registry, "-q"]
    if "-m" not in args:
        base += ["-m", "tiny"]
    result = run(*base, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "content,message", [(None, "no such file"), (b"", "empty"), (b"garbage!" * 50, "not a readable")]
)
def test_bad_audio_gives_one_line_and_no_output(registry: Path, tmp_path: Path, content, message) -> None:
    src = tmp_path / "in.wav"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.wav"
    result = run("translate", src, "--to", "piano", "-m", "tiny", "--models", registry, "-o", out)
    assert result.exit_code == 1 and message in result.stderr
    assert not out.exists()
    # one error line on stderr; the summary table goes to stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_tampered_weights_are_refused(tmp_path: Path, wav: Path) -> None:
    from .conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "models" / "t")
    weights = folder / "decoders" / "piano.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = run(
        "translate",
        wav,
        "--to",
        "piano",
        "-m",
        "t",
        "--models",
        tmp_path / "models",
        "-o",
        tmp_path / "o.wav",
    )
    assert result.exit_code == 1 and "sha256" in result.output
    assert not (tmp_path / "o.wav").exists()


def test_version() -> None:
    from musictranslate import __version__

    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_min_p_changes_what_is_sampled(registry: Path, wav: Path) -> None:
    outs = {}
    for name, options in (("plain", ()), ("truncated", ("--min-p", 0.5))):
        out = wav.with_name(f"{name}.wav")
        args = ("translate", wav, "--to", "piano", "-m", "tiny", "--models", registry, "-o", out, "-q")
        result = run(*args, "-t", 1, *options)
        assert result.exit_code == 0, result.output
        outs[name] = sf.read(out)[0]
    assert not np.array_equal(outs["plain"], outs["truncated"])


def test_follow_pitch_translates_and_refuses_a_count_out_of_range(registry: Path, wav: Path) -> None:
    args = ("translate", wav, "--to", "piano", "-m", "tiny", "--models", registry, "-q")
    guided = run(*args, "--follow-pitch", 3, "-o", wav.with_name("guided.wav"))
    assert guided.exit_code == 0, guided.output
    assert sf.read(wav.with_name("guided.wav"))[0].shape == (8000,)
    for count in (0, 17):
        refused = run(*args, "--follow-pitch", count, "-o", wav.with_name(f"bad{count}.wav"))
        assert refused.exit_code == 2 and "--follow-pitch" in refused.output
        assert not wav.with_name(f"bad{count}.wav").exists()


def test_retune_translates_and_says_so_in_the_files_tag(registry: Path, wav: Path) -> None:
    args = ("translate", wav, "--to", "piano", "-m", "tiny", "--models", registry, "-q")
    for flag, said in (("--retune", "retune=True"), ("--no-retune", "retune=False")):
        out = wav.with_name(f"{flag}.wav")
        result = run(*args, flag, "-o", out)
        assert result.exit_code == 0, result.output
        assert sf.read(out)[0].shape == (8000,) and said in sf.SoundFile(out).comment
