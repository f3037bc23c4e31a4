"""What a new user meets in the first hour, through the CLI and the API: re-runs over a folder,
the output's sample rate, option names and help, usage errors, JSON, pipes, notes and warnings."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import musictranslate
from musictranslate import jobs
from musictranslate.audio import AUDIO_EXTENSIONS, save_audio
from musictranslate.cli import app
from musictranslate.config import SAMPLE_RATE
from musictranslate.loudness import loudness_db
from musictranslate.registry import load_model
from musictranslate.speed import GenerationOptions
from musictranslate.translation import BlendWarning

from .conftest import tone

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write(path: Path, seconds: float = 0.3, rate: int = SAMPLE_RATE, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq, rate), rate)
    return path


@pytest.fixture
def tiny(registry: Path) -> list[str]:
    return ["-m", "tiny", "--models", str(registry)]


# re-running over a folder -------------------------------------------------------------------


def test_a_second_run_over_a_folder_skips_the_tools_own_outputs_with_a_note(
    tiny: list[str], tmp_path: Path
) -> None:
    takes = tmp_path / "takes"
    write(takes / "a.wav")
    write(takes / "solo_piano.wav", freq=330)  # the user's own recording: its name is no evidence
    first = run("translate", takes, "--to", "piano", "-q", *tiny)
    assert first.exit_code == 0, first.output
    assert (takes / "a_piano.wav").is_file() and (takes / "solo_piano_piano.wav").is_file()

    again = run("translate", takes, "--to", "piano", "--force", "--json", *tiny)
    assert again.exit_code == 0, again.output
    status = {Path(r["input"]).name: r["status"] for r in json.loads(again.stdout)}
    assert status == {
        "a.wav": "ok",
        "a_piano.wav": "skipped",
        "solo_piano.wav": "ok",
        "solo_piano_piano.wav": "skipped",
    }
    assert not (takes / "a_piano_piano.wav").exists()
    assert "note:" in again.stderr and "written by musictranslate" in again.stderr
    # a file named on its own is a deliberate second translation
    named = run("translate", takes / "a_piano.wav", "--to", "flute", "-q", *tiny)
    assert named.exit_code == 0 and (takes / "a_piano_flute.wav").is_file()


def test_in_one_run_an_input_that_another_inputs_output_replaces_is_left_alone(
    tiny: list[str], tmp_path: Path
) -> None:
    takes = tmp_path / "takes"
    write(takes / "a.wav")
    write(takes / "a_piano.wav", freq=330)  # no tag: not ours, but this run overwrites it first
    result = run("translate", takes, "--to", "piano", "--force", "--json", *tiny)
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in json.loads(result.stdout)}
    assert records["a_piano.wav"]["status"] == "skipped"
    assert "this run replaces it" in records["a_piano.wav"]["note"]
    assert not (takes / "a_piano_piano.wav").exists()


def test_a_folder_holding_only_outputs_produces_nothing_and_exits_1(tiny: list[str], tmp_path: Path) -> None:
    takes = tmp_path / "takes"
    write(takes / "a.wav")
    assert run("translate", takes / "a.wav", "--to", "piano", "-q", *tiny).exit_code == 0
    (takes / "a.wav").unlink()
    result = run("translate", takes, "--to", "flute", "-q", *tiny)
    assert result.exit_code == 1
    assert not (takes / "a_piano_flute.wav").exists()


@pytest.mark.parametrize(
    "extension", [e for e in AUDIO_EXTENSIONS if jobs.writable_extension(e)], ids=lambda e: e
)
def test_every_format_a_folder_scan_picks_up_and_the_tool_writes_holds_the_tag(
    tmp_path: Path, extension: str
) -> None:
    """Why a tag is enough and no name-based guess is needed (see ``jobs``)."""
    path = save_audio(tmp_path / f"x{extension}", tone(0.2), comment="musictranslate 0.1.0: model=m domain=d")
    assert jobs.provenance(path) is not None
    plain = tmp_path / f"plain{extension}"
    sf.write(plain, tone(0.2), SAMPLE_RATE, format=extension.lstrip(".").upper())
    assert jobs.provenance(plain) is None


# sample rate ---------------------------------------------------------------------------------


def test_output_is_written_at_the_inputs_rate_unless_asked_and_says_so(
    tiny: list[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "cd.wav", seconds=0.3, rate=44_100)
    result = run("translate", source, "--to", "piano", "--json", *tiny)
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    info = sf.info(record["output"])
    assert info.samplerate == record["sample_rate"] == 44_100
    assert abs(info.frames - round(0.3 * 44_100)) <= 44_100 // SAMPLE_RATE + 1
    table = run("translate", source, "--to", "flute", "--sample-rate", 22_050, *tiny)
    assert table.exit_code == 0, table.output
    assert sf.info(tmp_path / "cd_flute.wav").samplerate == 22_050 and "22050" in table.stdout
    assert run("translate", source, "--to", "flute", "--sample-rate", 100, "--force", *tiny).exit_code == 2
    audio, _ = sf.read(tmp_path / "cd_piano.wav")
    assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-3  # the peak ceiling holds after resampling


def test_an_mp3_output_takes_the_nearest_rate_mpeg_holds(tiny: list[str], tmp_path: Path) -> None:
    source = write(tmp_path / "hi.wav", rate=96_000)
    result = run("translate", source, "--to", "piano", "--format", "mp3", "-q", *tiny)
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "hi_piano.mp3").samplerate == 48_000
    asked = run("translate", source, "--to", "flute", "--format", "mp3", "--sample-rate", 96_000, *tiny)
    assert asked.exit_code == 1 and "mp3 cannot hold 96000 Hz" in asked.stderr
    assert not (tmp_path / "hi_flute.mp3").exists()


def test_help_says_the_bandwidth_stays_8_khz() -> None:
    text = "".join(run("translate", "--help").stdout.replace("│", "").split())
    assert "--sample-rate" in text and "bandwidthstays8kHz" in text


# one name per meaning; help; usage errors ---------------------------------------------------


COMMANDS = [
    ["translate"],
    ["blend"],
    ["models"],
    ["train"],
    ["add-domain"],
    ["evaluate"],
    *(
        ["evaluate", c]
        for c in ("pitch", "reference", "classifier", "domain", "lineup", "embedding", "report")
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_no_python_type_tags(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    for tag in ("<bool>", "<list[", "<path>", "<str>", "<int", "<float"):
        assert tag not in result.stdout, (tag, result.stdout)


def test_one_name_per_meaning_across_commands() -> None:
    def options(*command: str) -> str:
        return " ".join(run(*command, "--help").stdout.split())

    assert "--to" in options("blend") and "--domain" not in options("blend")
    assert "--from" in options("evaluate", "lineup") and "--domain" not in options("evaluate", "lineup")
    for command in (("train",), ("add-domain",)):
        text = options(*command)
        assert "--output" in text and "-o" in text and "--out " not in text
        assert "--loader-workers" in text and "--workers" not in text.replace("--loader-workers", "")
    assert "--workers" in options("translate")


@pytest.mark.parametrize(
    "args",
    [
        ["translate", "x.wav", "--to", "piano", "--threads", "0"],
        ["translate", "x.wav"],
        ["translate", "x.wav", "--to", "piano", "--no-such-option"],
        ["blend", "a.wav", "b.wav", "-d", "piano"],
    ],
    ids=["bad value", "missing option", "unknown option", "old blend flag"],
)
def test_usage_errors_are_one_error_line_and_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], result.stderr


def test_models_answers_without_torch_and_takes_json(registry: Path) -> None:
    code = (
        "import json, sys\n"
        "from musictranslate.cli import app\n"
        "try:\n"
        f"    app(['models', '--json', '--models', {str(registry)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in ('torch', 'librosa', 'numpy') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    document, _, modules = done.stdout.rpartition("\n[")
    assert json.loads("[" + modules) == []
    listed = json.loads(document)
    tiny = next(m for m in listed["models"] if m["name"] == "tiny")
    assert tiny["domains"] == ["piano", "flute"] and str(registry) in listed["searched"]


# the library gives what the CLI gives --------------------------------------------------------


def test_the_library_translate_returns_what_the_cli_writes(registry: Path, tmp_path: Path) -> None:
    quiet = (0.05 * tone(0.5) / 0.5).astype(np.float32)  # far below the decoder's own level
    source = tmp_path / "quiet.wav"
    sf.write(source, quiet, SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "out.wav"
    cli = run("translate", source, "--to", "piano", "-o", out, "-q", "-m", "tiny", "--models", registry)
    assert cli.exit_code == 0, cli.output
    written, _ = sf.read(out, dtype="float32")
    model = load_model("tiny", registry)
    returned = musictranslate.translate(quiet, "piano", model=model)
    assert np.abs(returned - written).max() < 1e-3  # the file is 16-bit PCM
    assert loudness_db(returned) == pytest.approx(loudness_db(quiet), abs=0.5)
    # "auto", the CLI's default device, is the library's too
    auto = musictranslate.translate(quiet, "piano", model=model, options=GenerationOptions(device="auto"))
    np.testing.assert_array_equal(auto, returned)


def test_the_api_takes_audio_first_and_the_model_as_a_keyword(registry: Path) -> None:
    model = load_model("tiny", registry)
    audio = tone(0.3)
    latent = musictranslate.encode(audio, model=model)
    out = musictranslate.decode(latent, "flute", model=model, length=len(audio))
    assert out.shape == audio.shape
    blended = musictranslate.blend(audio, tone(0.3, 660), "piano", model=model, keep=0.1, crossfade=0.1)
    assert blended.ndim == 1 and len(blended) > 0
    with pytest.raises(TypeError):
        musictranslate.encode(model, audio)  # the old order fails at once, never misread


# output for people and for scripts --------------------------------------------------------------


def test_in_a_pipe_the_summary_keeps_each_file_name_on_one_line(tiny: list[str], tmp_path: Path) -> None:
    source = write(tmp_path / ("a_rather_long_recording_name_" * 3 + "take_7.wav"))
    result = run("translate", source, "--to", "piano", *tiny)
    assert result.exit_code == 0, result.output
    assert any(str(source) in line for line in result.stdout.splitlines()), result.stdout
    output = source.with_name(source.stem + "_piano.wav")
    scores = run("evaluate", "pitch", source, output)
    assert any(str(output) in line for line in scores.stdout.splitlines()), scores.stdout


def test_json_keeps_non_ascii_names_and_names_the_model_and_device(tiny: list[str], tmp_path: Path) -> None:
    source = write(tmp_path / "préludes" / "ピアノ.wav")
    result = run("translate", source, "--to", "piano", "--json", "--device", "cpu", *tiny)
    assert result.exit_code == 0, result.output
    assert "ピアノ.wav" in result.stdout and "préludes" in result.stdout
    (record,) = json.loads(result.stdout)
    assert record["model"] == "tiny" and record["device"] == "cpu"


def test_blend_warns_when_keep_is_longer_than_the_first_input(tiny: list[str], tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.wav", 0.3), write(tmp_path / "b.wav", 0.3, freq=660)
    long = run("blend", a, b, "--to", "piano", "--keep", "3.5", *tiny)
    assert long.exit_code == 0, long.output
    assert "warning:" in long.stderr and "longer than the first input" in long.stderr
    short = run("blend", a, b, "--to", "flute", "--keep", "0.1", "--crossfade", "0.1", *tiny)
    assert short.exit_code == 0 and "warning" not in short.stderr
    model = load_model(tiny[1], tiny[3])
    with pytest.warns(BlendWarning, match="longer than the first input"):
        musictranslate.blend(tone(0.3), tone(0.3), "piano", model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        musictranslate.blend(tone(0.3), tone(0.3), "piano", model=model, keep=0.1, crossfade=0.1)


def test_before_the_progress_bar_the_terminal_is_told_what_is_happening(
    tiny: list[str], wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("musictranslate.cli.common.interactive", lambda quiet: not quiet)  # a terminal
    told = run("translate", wav, "--to", "piano", *tiny)
    assert told.exit_code == 0, told.output
    assert "loading model tiny" in told.stderr and "fitting" in told.stderr
    hushed = run("translate", wav, "--to", "flute", "-q", *tiny)
    assert hushed.exit_code == 0 and hushed.stderr == ""
