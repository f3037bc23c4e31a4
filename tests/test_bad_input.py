"""Bad input, broken models and failing outputs, all through the CLI.

Every failure must be one line on stderr that names the file and says what to do, a non-zero exit
status, no Python traceback (unless ``--debug``) and no output file, whole or partial. Odd but
valid input (8-bit, 24-bit, 96 kHz, six channels, clipping) must simply work.

Cases already covered elsewhere and not repeated here: a missing input, an empty file and random
bytes named .wav (``test_cli.test_bad_audio_gives_one_line_and_no_output``, ``test_jobs_cli.
test_good_corrupt_and_empty_files_in_one_folder``); an unknown domain for ``translate`` and a
model name that is not in the registry (``test_cli.test_model_side_errors_are_one_line``); a
tampered decoder (``test_cli.test_tampered_weights_are_refused``); refusing to overwrite without
``--force`` (``test_cli``, ``test_jobs_cli``); an output folder that cannot be created
(``test_jobs_cli.test_output_folder_that_cannot_be_created``). Faults that need a subprocess or
a training run (a real full disk, a read-only folder, memory on long files, checkpoints) are in
``test_faults.py``.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import save_file
from typer.testing import CliRunner

import musictranslate
from musictranslate.cli import app
from musictranslate.config import SAMPLE_RATE, preset
from musictranslate.errors import ModelError
from musictranslate.loudness import PEAK_CEILING
from musictranslate.model import Decoder
from musictranslate.registry import sha256_file

from .conftest import make_tiny_model, tone

runner = CliRunner()
POOL = preset("tiny").pool  # samples per latent frame of the test model: the shortest valid input
SECONDS = 0.3


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str, code: int = 1) -> str:
    """Exit ``code``, exactly one ``error:`` line on stderr holding every needle, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed write could have left behind."""
    return sorted(p.name for p in folder.rglob("*.part"))


@pytest.fixture
def tiny(registry: Path) -> list[str]:
    return ["-m", "tiny", "--models", str(registry)]


# --------------------------------------------------------------------------------------------
# audio in: unreadable or unusable files


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE, subtype: str | None = None) -> Path:
    sf.write(path, audio, rate, subtype=subtype)
    return path


def truncated_header(path: Path) -> Path:
    whole = write_wav(path.with_name("whole.wav"), tone(SECONDS)).read_bytes()
    path.write_bytes(whole[:30])  # RIFF/WAVE and part of the fmt chunk, no data chunk
    return path


def with_bad_sample(value: float, subtype: str) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        audio = tone(SECONDS)
        audio[100] = value
        return write_wav(path, audio, subtype=subtype)

    return make


def random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    return path


def a_folder(path: Path) -> Path:
    path.mkdir()
    return path


UNUSABLE = {
    # name: (file name, how to make it, what the one error line must say)
    "truncated WAV header": ("cut.wav", truncated_header, ["cut.wav", "not a readable audio file"]),
    "random bytes named .mp3": (
        "noise.mp3",
        random_bytes,
        ["noise.mp3", "format not recognised", "supported: .wav"],
    ),
    "all-silent file": (
        "silence.wav",
        lambda p: write_wav(p, np.zeros(SAMPLE_RATE, np.float32)),
        ["silence.wav", "is silent"],
    ),
    "1-sample file": (
        "one.wav",
        lambda p: write_wav(p, tone(SECONDS)[:1]),
        ["one.wav", "too short: 1 sample "],
    ),
    "shorter than one latent frame": (
        "short.wav",
        lambda p: write_wav(p, tone(SECONDS)[: POOL - 1]),
        [f"too short: {POOL - 1} samples", f"give at least {POOL} samples"],
    ),
    "NaN in a float WAV": ("nan.wav", with_bad_sample(np.nan, "FLOAT"), ["nan.wav", "NaN", "re-export"]),
    "inf in a double WAV": ("inf.wav", with_bad_sample(np.inf, "DOUBLE"), ["inf.wav", "infinite"]),
    "a folder named like a file": (
        "folder.wav",
        a_folder,
        ["folder.wav", "no audio files in this folder"],
    ),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_audio_fails_in_one_line_and_writes_nothing(
    case: str, tiny: list[str], tmp_path: Path
) -> None:
    name, make, needles = UNUSABLE[case]
    source = make(tmp_path / name)
    out = tmp_path / "out"
    result = run("translate", source, "--to", "piano", "-o", out, "-q", *tiny)
    assert_one_line_error(result, *needles)
    assert not out.exists() or not any(out.iterdir())


def test_m4a_without_ffmpeg_says_how_to_install_it(
    tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "voice.m4a"
    source.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no ffmpeg anywhere on PATH
    result = run("translate", source, "--to", "piano", "-q", *tiny)
    assert_one_line_error(result, "voice.m4a", "needs ffmpeg", "apt-get install ffmpeg", "convert the file")
    assert not (tmp_path / "voice_piano.wav").exists()


def test_a_folder_where_blend_wants_a_file(tiny: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    second = write_wav(tmp_path / "b.wav", tone(SECONDS))
    result = run("blend", folder, second, "--to", "piano", "-o", tmp_path / "out.wav", "-q", *tiny)
    assert_one_line_error(result, str(folder), "is a folder, not an audio file")
    assert not (tmp_path / "out.wav").exists()


# --------------------------------------------------------------------------------------------
# audio in: unusual but valid files just work


def truncated_data(path: Path) -> Path:
    """A WAV whose header promises more samples than the file holds (a copy cut short)."""
    whole = write_wav(path.with_name("whole.wav"), tone(SECONDS)).read_bytes()
    path.write_bytes(whole[: 44 + 2 * 2000])
    return path


VALID = {
    # name: (file name, how to make it, expected output length in samples)
    "8-bit PCM": ("u8.wav", lambda p: write_wav(p, tone(SECONDS), subtype="PCM_U8"), 4800),
    "24-bit PCM": ("p24.wav", lambda p: write_wav(p, tone(SECONDS), subtype="PCM_24"), 4800),
    "96 kHz": ("hi.wav", lambda p: write_wav(p, tone(SECONDS, rate=96_000), 96_000), 4800),
    "6 channels": ("six.wav", lambda p: write_wav(p, np.stack([tone(SECONDS)] * 6, axis=1)), 4800),
    "clipping float input (peak +12 dBFS)": (
        "hot.wav",
        lambda p: write_wav(p, 4 * tone(SECONDS), subtype="FLOAT"),
        4800,
    ),
    "header promises more than the file holds": ("cut.wav", truncated_data, 2000),
    "exactly one latent frame": ("frame.wav", lambda p: write_wav(p, tone(SECONDS)[:POOL]), POOL),
    "mp3 needs no ffmpeg": ("tune.mp3", lambda p: write_wav(p, tone(SECONDS)), None),
}


@pytest.mark.parametrize("case", list(VALID))
def test_unusual_but_valid_audio_is_translated(
    case: str, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, make, length = VALID[case]
    source = make(tmp_path / name)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # nothing here may need ffmpeg
    out = tmp_path / "out.wav"
    result = run("translate", source, "--to", "piano", "-o", out, "-q", *tiny)
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(out, always_2d=True)
    own_rate = 96_000 if case == "96 kHz" else SAMPLE_RATE  # written at the input's rate
    assert rate == own_rate and audio.shape[1] == 1
    if length is not None:
        assert abs(audio.shape[0] - length * own_rate // SAMPLE_RATE) <= own_rate // SAMPLE_RATE
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= PEAK_CEILING + 1e-3  # never clips


# --------------------------------------------------------------------------------------------
# model side


def rehash(folder: Path, file: str) -> None:
    """Record ``file``'s new sha256 in the manifest, as if the damage were there at install time."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = [manifest["encoder"], manifest["confusion"], *manifest["decoders"].values()]
    for entry in entries:
        if entry["file"] == file:
            entry["sha256"] = sha256_file(folder / file)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(folder: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def newer_format(folder: Path) -> None:
    edit_manifest(folder, lambda m: m.update(format_version=99))


def truncated_weights(folder: Path) -> None:
    path = folder / "encoder.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    rehash(folder, "encoder.safetensors")


def truncated_unrecorded(folder: Path) -> None:
    path = folder / "encoder.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def decoder_of_another_shape(folder: Path) -> None:
    wider = Decoder(replace(preset("tiny"), residual_channels=16))
    state = {k: v.contiguous() for k, v in wider.state_dict().items()}
    save_file(state, folder / "decoders" / "piano.safetensors")
    rehash(folder, "decoders/piano.safetensors")


def unknown_architecture_key(folder: Path) -> None:
    edit_manifest(folder, lambda m: m["architecture"].update(attention_heads=8))


BROKEN = {
    # name: (what is done to a fresh model folder, what the one error line must say)
    "manifest from a newer format version": (
        newer_format,
        ["manifest.json", "newer", "upgrade musictranslate"],
    ),
    "truncated safetensors (sha256 re-recorded)": (
        truncated_weights,
        ["encoder.safetensors", "truncated or corrupt", "re-install"],
    ),
    "truncated weights: sha256 mismatch": (
        truncated_unrecorded,
        ["encoder.safetensors", "sha256 does not match", "re-install"],
    ),
    "decoder shape disagrees with the manifest": (
        decoder_of_another_shape,
        ["piano.safetensors", "has shape", "needs", "re-install"],
    ),
    "missing decoder file": (
        lambda f: (f / "decoders" / "piano.safetensors").unlink(),
        ["piano.safetensors", "missing", "re-install"],
    ),
    "manifest that is not JSON": (
        lambda f: (f / "manifest.json").write_text("{truncated"),
        ["manifest.json", "unreadable manifest", "re-install"],
    ),
    "architecture this version does not know": (
        unknown_architecture_key,
        ["manifest.json", "attention_heads"],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_fails_in_one_line_before_any_output(case: str, tmp_path: Path) -> None:
    damage, needles = BROKEN[case]
    models = tmp_path / "models"
    damage(make_tiny_model(models / "m"))
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / "out.wav"
    result = run("translate", source, "--to", "piano", "-m", "m", "--models", models, "-o", out, "-q")
    assert_one_line_error(result, *needles)
    assert not out.exists()


@pytest.mark.parametrize("exists", [False, True], ids=["no such folder", "folder without manifest"])
def test_model_path_that_is_not_a_model(exists: bool, registry: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    if exists:
        folder.mkdir()
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    result = run("translate", source, "--to", "piano", "-m", folder, "--models", registry, "-q")
    problem = "has no manifest.json" if exists else "no such folder"
    line = assert_one_line_error(result, str(folder), problem, "give a model folder or a registry name")
    assert "tiny" in line.split("available: ")[1]


def test_pickled_weights_are_never_unpickled(tmp_path: Path) -> None:
    """A weight file holding a pickle (here one that would create a file when loaded) is refused
    as not-safetensors even with a matching sha256, and its payload never runs."""
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    models = tmp_path / "models"
    folder = make_tiny_model(models / "m")
    (folder / "encoder.safetensors").write_bytes(pickle.dumps(Payload()))
    rehash(folder, "encoder.safetensors")
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    result = run("translate", source, "--to", "piano", "-m", "m", "--models", models, "-q")
    assert_one_line_error(result, "encoder.safetensors", "not a readable safetensors file")
    assert not marker.exists()


def test_the_package_never_unpickles() -> None:
    """Static guard: no pickle import, no ``torch.load`` without ``weights_only=True``, no
    ``np.load(allow_pickle=True)`` anywhere in the package."""
    offences = []
    for path in Path(musictranslate.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names):
                    offences.append(f"{path.name}:{node.lineno} imports a pickler")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keywords = {k.arg: k.value for k in node.keywords}
                weights_only = keywords.get("weights_only")
                safe = isinstance(weights_only, ast.Constant) and weights_only.value is True
                if node.func.attr == "load" and ast.unparse(node.func.value) == "torch" and not safe:
                    offences.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
                allow = keywords.get("allow_pickle")
                if isinstance(allow, ast.Constant) and allow.value is True:
                    offences.append(f"{path.name}:{node.lineno} allow_pickle=True")
    assert not offences


def test_unknown_domain_for_blend_lists_the_known_ones(tiny: list[str], tmp_path: Path) -> None:
    a = write_wav(tmp_path / "a.wav", tone(SECONDS))
    b = write_wav(tmp_path / "b.wav", tone(SECONDS, 660))
    result = run("blend", a, b, "--to", "banjo", "-q", *tiny)
    assert_one_line_error(result, "'banjo'", "known: piano, flute")
    assert not list(tmp_path.glob("a_b_*"))


def test_models_lists_a_broken_model_and_hides_staging_folders(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_tiny_model(models / "good")
    newer_format(make_tiny_model(models / "future"))
    make_tiny_model(models / ".good.k3j2x")  # what a killed save leaves behind
    result = run("models", "--models", models)
    assert result.exit_code == 0, result.output
    assert "good" in result.output and "future" in result.output and "upgrade" in result.output
    assert ".good" not in result.output


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    models = tmp_path / "models"
    newer_format(make_tiny_model(models / "m"))
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    args = ["translate", source, "--to", "piano", "-m", "m", "--models", models, "-q"]
    quiet = run(*args)
    assert quiet.exit_code == 1 and not isinstance(quiet.exception, ModelError)
    loud = run("--debug", *args)
    assert isinstance(loud.exception, ModelError)  # raised, so Python prints its traceback


def test_debug_shows_the_traceback_of_a_failure_the_run_recorded(tiny: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    args = ["translate", bad, "--to", "piano", "-q", *tiny]
    assert_one_line_error(run(*args), "bad.wav")
    loud = run("--debug", *args)
    assert loud.exit_code == 1
    assert "Traceback (most recent call last)" in loud.stderr and "error: " in loud.stderr


# --------------------------------------------------------------------------------------------
# output side


def test_output_in_a_missing_folder_is_created(tiny: list[str], tmp_path: Path) -> None:
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / "new" / "deeper" / "out.flac"
    result = run("translate", source, "--to", "piano", "-o", out, "-q", *tiny)
    assert result.exit_code == 0, result.output
    assert sf.info(out).frames == int(SECONDS * SAMPLE_RATE) and leftovers(tmp_path) == []


def fail_half_way(monkeypatch: pytest.MonkeyPatch, error: BaseException | None) -> None:
    """Make every audio write put half the samples on disk, then raise ``error`` -- or, with
    ``None``, return quietly as libsndfile does for some formats when the disk fills up."""
    real_write = sf.SoundFile.write

    def write(self, data, *args, **kwargs):
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        if error is not None:
            raise error

    monkeypatch.setattr(sf.SoundFile, "write", write)


FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
WRITE_FAILURES = {
    # name: (the error the write raises, what the one error line must say)
    "disk full (ENOSPC)": (FULL, ["No space left on device", "free some space"]),
    "library error (libsndfile 'System error')": (
        sf.LibsndfileError(2),
        ["System error", "is the disk full or the folder read-only"],
    ),
    "short write that is not reported": (None, ["only 2400 of 4800 frames", "disk full"]),
}


@pytest.mark.parametrize("case", list(WRITE_FAILURES))
def test_failed_write_leaves_no_partial_file(
    case: str, tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, needles = WRITE_FAILURES[case]
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / "out" / "in_piano.wav"
    fail_half_way(monkeypatch, error)
    result = run("translate", source, "--to", "piano", "-o", out.parent, "-q", *tiny)
    assert_one_line_error(result, str(out), *needles)
    assert not out.exists() and leftovers(tmp_path) == []


def test_force_keeps_the_old_output_when_the_new_one_cannot_be_written(
    tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / "in_piano.wav"
    out.write_bytes(b"last week's render")
    fail_half_way(monkeypatch, FULL)
    result = run("translate", source, "--to", "piano", "--force", "-q", *tiny)
    assert_one_line_error(result, str(out), "No space left on device")
    assert out.read_bytes() == b"last week's render" and leftovers(tmp_path) == []
