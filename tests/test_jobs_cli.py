"""``translate`` and ``blend`` as users run them: many files and folders, several domains, JSON,
seeds, threads, exit codes, loudness, and the registry's search order. All through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from musictranslate import jobs, runtime
from musictranslate.audio import AUDIO_EXTENSIONS
from musictranslate.cli import app
from musictranslate.config import DEFAULT_TEMPERATURE, SAMPLE_RATE
from musictranslate.loudness import PEAK_CEILING, loudness_db, match_loudness

from .conftest import make_tiny_model, tone

runner = CliRunner()
SECONDS = 0.3
JSON_KEYS = {
    "input",
    "output",
    "domain",
    "seconds",
    "wall_seconds",
    "rtf",
    "status",
    "error",
    "seed",
    "transpose",
    "sample_rate",
    "model",
    "device",
    "note",
}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write(path: Path, seconds: float = SECONDS, freq: float = 440.0, gain: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq) * gain, SAMPLE_RATE)
    return path


@pytest.fixture
def tiny(registry: Path) -> list[str]:
    """Arguments selecting the tiny test model."""
    return ["-m", "tiny", "--models", str(registry)]


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A folder tree: audio at two depths, a text file, a hidden file, a non-audio extension."""
    root = tmp_path / "library"
    write(root / "b.wav", freq=330)
    write(root / "a.wav")
    write(root / "sub" / "c.flac", freq=550)
    (root / "notes.txt").write_text("not audio")
    (root / ".hidden.wav").write_bytes(b"AppleDouble junk")
    return root


def translate_json(*args: object):
    result = run("translate", *args, "--json", "-q")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


# 1. many files and folders, several domains, naming, mirroring -----------------------------


def test_folders_recursive_in_stable_order_each_input_encoded_once(
    tiny: list[str], library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_encode = jobs.encode_fitted
    monkeypatch.setattr(
        jobs,
        "encode_fitted",
        lambda audio, *, model, transpose, guide: (
            calls.append(len(audio)) or real_encode(audio, model=model, transpose=transpose, guide=guide)
        ),
    )
    single = write(tmp_path / "solo.wav")
    result, records = translate_json(library, single, "--to", "piano,flute", *tiny)
    assert result.exit_code == 0, result.output
    assert len(calls) == 4  # four inputs, two domains each: encoded once per input
    inputs = [r["input"] for r in records]
    expected = [library / "a.wav", library / "b.wav", library / "sub" / "c.flac", single]
    assert inputs == [str(p) for p in expected for _ in range(2)]
    assert [r["domain"] for r in records] == ["piano", "flute"] * 4
    for record in records:
        source = Path(record["input"])
        ext = source.suffix
        assert record["output"] == str(source.with_name(f"{source.stem}_{record['domain']}{ext}"))
        assert Path(record["output"]).is_file() and record["status"] == "ok"
    assert sf.info(library / "sub" / "c_piano.flac").format == "FLAC"


def test_output_folder_mirrors_the_input_tree(tiny: list[str], library: Path, tmp_path: Path) -> None:
    out = tmp_path / "run1.0"  # a dot that is no audio extension is part of a folder's name
    result, records = translate_json(library, "--to", "flute", "-o", out, *tiny)
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a_flute.wav", "b_flute.wav", "sub/c_flute.flac"]
    assert not list(library.rglob("*_flute.*"))  # nothing written next to the inputs


def test_single_input_single_domain_may_name_the_output_file(tiny: list[str], wav: Path) -> None:
    out = wav.parent / "renders" / "mine.flac"
    result = run("translate", wav, "--to", "piano", "-o", out, "-q", *tiny)
    assert result.exit_code == 0, result.output
    assert sf.info(out).format == "FLAC"


def test_format_option_picks_the_output_format(tiny: list[str], library: Path, tmp_path: Path) -> None:
    result, records = translate_json(library, "--to", "piano", "--format", "ogg", "-o", tmp_path / "o", *tiny)
    assert result.exit_code == 0, result.output
    assert all(r["output"].endswith(".ogg") for r in records)
    assert sf.info(records[0]["output"]).format == "OGG"


def test_two_inputs_with_the_same_name_do_not_overwrite_each_other(tiny: list[str], tmp_path: Path) -> None:
    first, second = write(tmp_path / "x" / "take.wav"), write(tmp_path / "y" / "take.wav", freq=300)
    result, records = translate_json(first, second, "--to", "piano", "-o", tmp_path / "out", *tiny)
    assert result.exit_code == 1
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert "also the output of" in records[1]["error"]


# 2. never overwrite without --force ---------------------------------------------------------


def test_existing_output_fails_naming_file_and_flag_others_still_written(
    tiny: list[str], library: Path
) -> None:
    taken = library / "a_piano.wav"
    taken.write_bytes(b"keep me")
    result = run("translate", library, "--to", "piano", "-q", *tiny)
    assert result.exit_code == 1
    assert str(taken) in result.stderr and "--force" in result.stderr
    assert taken.read_bytes() == b"keep me"
    assert (library / "b_piano.wav").is_file() and (library / "sub" / "c_piano.flac").is_file()
    again = run("translate", library, "--to", "piano", "-q", "--force", *tiny)
    assert again.exit_code == 0, again.output
    assert sf.info(taken).frames == int(SECONDS * SAMPLE_RATE)


# 3. exit codes and bad input ----------------------------------------------------------------


def test_good_corrupt_and_empty_files_in_one_folder(tiny: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write(folder / "good.wav")
    (folder / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(300))
    (folder / "empty.flac").write_bytes(b"")
    result, records = translate_json(folder, "--to", "piano,flute", *tiny)
    assert result.exit_code == 1
    status = {(Path(r["input"]).name, r["domain"]): r["status"] for r in records}
    assert status == {
        ("corrupt.wav", "piano"): "failed",
        ("corrupt.wav", "flute"): "failed",
        ("empty.flac", "piano"): "failed",
        ("empty.flac", "flute"): "failed",
        ("good.wav", "piano"): "ok",
        ("good.wav", "flute"): "ok",
    }
    assert (folder / "good_piano.wav").is_file() and (folder / "good_flute.wav").is_file()
    assert not (folder / "corrupt_piano.wav").exists() and not (folder / "empty_piano.flac").exists()
    # each bad file reported once on stderr (not once per domain), no traceback
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "corrupt.wav" in result.stderr and "empty" in result.stderr
    assert "Traceback" not in result.output


def test_folder_without_audio_is_a_failure_naming_folder_and_extensions(
    tiny: list[str], tmp_path: Path, wav: Path
) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio")
    result, records = translate_json(empty, wav, "--to", "piano", *tiny)
    assert result.exit_code == 1
    assert records[0]["input"] == str(empty) and records[0]["status"] == "failed"
    assert str(empty) in records[0]["error"] and all(ext in records[0]["error"] for ext in AUDIO_EXTENSIONS)
    assert records[1]["status"] == "ok"  # the good input is still translated


def test_unknown_domain_in_a_list_fails_before_any_work(tiny: list[str], library: Path) -> None:
    result = run("translate", library, "--to", "piano,banjo", *tiny)
    assert result.exit_code == 1
    assert "banjo" in result.stderr and "known: piano, flute" in result.stderr
    assert not list(library.rglob("*_piano.*"))


@pytest.mark.parametrize(
    "extra",
    [
        ["--to", "piano,flute"],  # one input, two domains
        ["--to", "piano", "SECOND"],  # two inputs
        ["--to", "piano", "FOLDER"],  # a folder
    ],
)
def test_output_file_with_several_outputs_is_a_usage_error(
    tiny: list[str], wav: Path, library: Path, extra: list[str]
) -> None:
    extra = [
        str(write(wav.parent / "two.wav")) if a == "SECOND" else str(library) if a == "FOLDER" else a
        for a in extra
    ]
    result = run("translate", wav, *extra, "-o", wav.parent / "out.wav", *tiny)
    assert result.exit_code == 2
    assert "-o" in result.stderr and "folder" in result.stderr
    assert not (wav.parent / "out.wav").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--to", ","],  # no domain
        ["--to", "piano", "--format", "xyz"],  # unwritable format
        ["--to", "piano", "-o", "OUT.xyz"],  # unwritable output file
        ["--to", "piano", "--device", "tpu"],
        ["--to", "piano", "--threads", "0"],
        ["--to", "piano", "--transpose", "up"],
        ["--to", "piano", "--transpose", "60"],
        [],  # --to missing
    ],
)
def test_usage_errors_exit_2(tiny: list[str], wav: Path, args: list[str]) -> None:
    args = [str(wav.parent / "out.xyz") if a == "OUT.xyz" else a for a in args]
    result = run("translate", wav, *args, *tiny)
    assert result.exit_code == 2, result.output


def test_a_whistle_above_the_models_register_is_shifted_down_and_the_user_told(
    tiny: list[str], tmp_path: Path
) -> None:
    high = write(tmp_path / "whistle.wav", seconds=2.0, freq=1318.5)
    low = write(tmp_path / "hum.wav", seconds=2.0, freq=330.0)
    result = run("translate", high, low, "--to", "piano", *tiny, "--json")
    assert result.exit_code == 0, result.output
    assert {Path(r["input"]).name: r["transpose"] for r in json.loads(result.stdout)} == {
        "whistle.wav": [-12],
        "hum.wav": [0],
    }
    assert result.stderr.count("note:") == 1 and "whistle.wav" in result.stderr
    assert "--transpose 0" in result.stderr
    kept, records = translate_json(high, "--to", "piano", "--transpose", "0", "-f", *tiny)
    assert kept.exit_code == 0 and records[0]["transpose"] == [0] and "note:" not in kept.stderr


def test_output_folder_that_cannot_be_created(tiny: list[str], wav: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder should go")
    result, records = translate_json(wav, "--to", "piano,flute", "-o", blocker / "out", *tiny)
    assert result.exit_code == 1
    assert all(r["status"] == "failed" and "cannot create the output folder" in r["error"] for r in records)
    assert str(blocker / "out") in result.stderr


# 4. summary table and JSON ------------------------------------------------------------------


def test_summary_table_on_stdout(tiny: list[str], wav: Path) -> None:
    result = run("translate", wav, "--to", "piano,flute", *tiny)
    assert result.exit_code == 0, result.output
    for header in ("input", "domain", "audio s", "wall s", "RTF", "status"):
        assert header in result.stdout
    assert result.stdout.count(" ok ") == 2 and "2 written, 0 failed" in result.stdout


def test_json_is_the_only_thing_on_stdout(tiny: list[str], tmp_path: Path, wav: Path) -> None:
    missing = tmp_path / "missing.wav"
    result = run("translate", wav, missing, "--to", "piano", "--json", *tiny)  # not quiet: still JSON only
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    assert [set(r) for r in records] == [JSON_KEYS, JSON_KEYS]
    ok, bad = records
    assert ok["status"] == "ok" and ok["error"] is None and ok["seconds"] == pytest.approx(0.5)
    assert ok["rtf"] == pytest.approx(ok["wall_seconds"] / ok["seconds"], rel=1e-2)
    assert (
        bad["status"] == "failed"
        and "no such file" in bad["error"]
        and bad["output"].endswith("missing_piano.wav")
    )
    assert "no such file" in result.stderr


# 5. device, threads, seeds ------------------------------------------------------------------


def test_same_seed_gives_bit_identical_files_and_is_recorded(tiny: list[str], wav: Path) -> None:
    def render(name: str, seed: int) -> tuple[bytes, dict]:
        out = wav.with_name(name)
        result, records = translate_json(
            wav, "--to", "piano", "-o", out, "--seed", seed, "--threads", 1, *tiny
        )
        assert result.exit_code == 0, result.output
        return out.read_bytes(), records[0]

    first, record = render("a.wav", 7)
    second, _ = render("b.wav", 7)
    other, _ = render("c.wav", 8)
    assert first == second and first != other
    assert record["seed"] == 7


def test_output_does_not_depend_on_what_else_is_in_the_run(
    tiny: list[str], library: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "alone.wav"
    assert run("translate", library / "b.wav", "--to", "flute", "-o", alone, "-q", *tiny).exit_code == 0
    result = run("translate", library, "--to", "piano,flute", "-o", tmp_path / "all", "-q", *tiny)
    assert result.exit_code == 0, result.output
    assert np.array_equal(sf.read(alone)[0], sf.read(tmp_path / "all" / "b_flute.wav")[0])


def test_device_and_threads(tiny: list[str], wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        result = run(
            "translate", wav, "--to", "piano", "--device", "cpu", "--threads", "1", "-q", "--force", *tiny
        )
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        assert (
            run("translate", wav, "--to", "piano", "--device", "auto", "-q", "--force", *tiny).exit_code == 0
        )
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == "cpu"
    result = run("translate", wav, "--to", "piano", "--device", "cuda", "-q", "--force", *tiny)
    assert result.exit_code == 1 and "no CUDA device" in result.stderr


# 6. output level ----------------------------------------------------------------------------


def test_output_loudness_matches_the_input_by_default(tiny: list[str], tmp_path: Path) -> None:
    quiet_input = write(tmp_path / "quiet.wav", seconds=0.5, gain=0.1)  # a -29 dBFS tone
    matched, raw = tmp_path / "matched.wav", tmp_path / "raw.wav"
    assert run("translate", quiet_input, "--to", "piano", "-o", matched, "-q", *tiny).exit_code == 0
    result = run("translate", quiet_input, "--to", "piano", "-o", raw, "--no-match-loudness", "-q", *tiny)
    assert result.exit_code == 0
    target = loudness_db(sf.read(quiet_input)[0])
    assert loudness_db(sf.read(matched)[0]) == pytest.approx(target, abs=0.5)
    assert abs(loudness_db(sf.read(raw)[0]) - target) > 1.0


def test_a_loud_input_never_gives_a_clipped_output(tiny: list[str], tmp_path: Path) -> None:
    loud = tmp_path / "loud.wav"
    square = np.sign(tone(0.5, 220)) * 0.999
    sf.write(loud, square, SAMPLE_RATE)
    out = tmp_path / "out.wav"
    assert run("translate", loud, "--to", "flute", "-o", out, "-q", *tiny).exit_code == 0
    audio = sf.read(out)[0]
    assert np.max(np.abs(audio)) <= PEAK_CEILING + 1e-4


def test_loudness_measure_edge_cases() -> None:
    assert loudness_db(np.zeros(16000)) is None
    assert loudness_db(tone(0.1)) == pytest.approx(-9.03, abs=0.1)  # a 0.5 sine: shorter than a block
    assert loudness_db(tone(2.0)) == pytest.approx(-9.03, abs=0.1)
    silent_out = match_loudness(np.zeros(800, np.float32), tone(0.5))
    assert not silent_out.any()  # nothing to amplify: left silent, not blown up


# 7. entry points ----------------------------------------------------------------------------


def test_python_dash_m_and_version() -> None:
    from musictranslate import __version__

    done = subprocess.run(
        [sys.executable, "-m", "musictranslate", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == f"musictranslate {__version__}"


def test_help_imports_neither_torch_nor_librosa() -> None:
    code = (
        "import sys\n"
        "from musictranslate.cli import app\n"
        "try:\n"
        "    app(['translate', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'librosa') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--to" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


# 8. the registry: where models are found and where new ones go ------------------------------


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Each registry root a user can fill, isolated from the real ones."""
    import musictranslate.catalog as catalog

    places = {name: tmp_path / name / "models" for name in ("flag", "env", "cwd", "user")}
    places["cwd"].parent.mkdir()
    monkeypatch.chdir(places["cwd"].parent)
    monkeypatch.setattr(catalog, "user_models_root", lambda: places["user"])
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    return places


def test_registry_search_order(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from musictranslate.catalog import ENV_VAR, find_model, registry_roots

    monkeypatch.setenv(ENV_VAR, str(roots["env"]))
    searched = registry_roots(roots["flag"])
    assert searched[:4] == [roots["flag"], roots["env"], Path.cwd() / "models", roots["user"]]
    assert searched[4].parts[-2:] == ("musictranslate", "_models")
    for name in ("user", "cwd", "env", "flag"):  # each root added shadows the ones after it
        make_tiny_model(roots[name] / "m", domains=("piano",))
        assert find_model("m", roots["flag"]) == roots[name] / "m"


def test_new_models_go_where_the_registry_looks(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from musictranslate.catalog import ENV_VAR, default_output_root, model_output_path

    assert default_output_root() == roots["user"]  # no ./models here: the per-user folder
    roots["cwd"].mkdir(parents=True)
    assert default_output_root() == Path.cwd() / "models"
    monkeypatch.setenv(ENV_VAR, str(roots["env"]))
    assert default_output_root() == roots["env"]
    assert default_output_root(roots["flag"]) == roots["flag"]
    assert model_output_path("mine") == roots["env"] / "mine"
    assert model_output_path("some/where") == Path("some/where")


# 9. blend follows the same conventions ------------------------------------------------------


def test_blend_naming_force_json_and_exit_codes(tiny: list[str], tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.wav", 0.5), write(tmp_path / "b.wav", 0.4, freq=660)
    args = ("blend", a, b, "--to", "piano,flute", "--keep", "0.2", "--crossfade", "0.1", *tiny)
    result = run(*args, "--json", "--seed", 3)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["output"] for r in records] == [
        str(tmp_path / "a_b_piano.wav"),
        str(tmp_path / "a_b_flute.wav"),
    ]
    assert all(r["seed"] == 3 and r["seconds"] == pytest.approx(0.6, abs=0.02) for r in records)
    again = run(*args, "-q")
    assert again.exit_code == 1 and "--force" in again.stderr and "a_b_piano.wav" in again.stderr
    assert run(*args, "-q", "--force").exit_code == 0
    out = tmp_path / "blends"
    assert run(*args, "-q", "-o", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_b_flute.wav", "a_b_piano.wav"]
    assert run(*args, "-o", tmp_path / "one.wav").exit_code == 2  # two domains, one file
    assert run(*args[:4], "banjo", *args[5:]).exit_code == 1
    missing = run("blend", a, tmp_path / "nope.wav", "--to", "piano", "-q", *tiny)
    assert missing.exit_code == 1 and "no such file" in missing.stderr


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_seed_is_written_into_the_output_metadata(registry: Path, wav: Path, ext: str) -> None:
    out = wav.with_name(f"meta.{ext}")
    result = runner.invoke(
        app,
        [
            "translate",
            str(wav),
            "--to",
            "piano",
            "-m",
            "tiny",
            "--models",
            str(registry),
            "-o",
            str(out),
            "--seed",
            "1234",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    comment = sf.SoundFile(out).comment
    assert "seed=1234" in comment and "domain=piano" in comment and "model=tiny" in comment
    assert f"temperature={DEFAULT_TEMPERATURE}" in comment  # lower than 1 sounds more like the instrument


def test_generation_plan_can_be_pinned_and_a_bad_dtype_is_a_usage_error(registry: Path, wav: Path) -> None:
    base = ["translate", str(wav), "--to", "piano", "-m", "tiny", "--models", str(registry), "-q", "--force"]
    out = wav.with_name("pinned.wav")
    pinned = runner.invoke(
        app, [*base, "-o", str(out), "--batch-size", "3", "--dtype", "float32", "--workers", "1"]
    )
    assert pinned.exit_code == 0, pinned.output
    assert sf.info(out).frames == sf.info(wav).frames
    bad = runner.invoke(app, [*base, "--dtype", "float8"])
    assert bad.exit_code == 2 and "float8" in bad.output
