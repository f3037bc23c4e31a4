"""A hostile or careless user, through the CLI: nothing a user owns is destroyed, nothing outside
its folder is touched, every signal and odd file ends cleanly (issue 21).

One section per class of fault, each fixed by one mechanism: ``safe_write`` (claiming output
folders, no-clobber final names, short temp names), ``names`` and ``manifest`` (one rule for
domain names and weight paths), ``stop`` (SIGTERM and SIGHUP handled as Ctrl-C, workers that die
with their parent), ``scan`` (one folder scanner, loop-safe), ``cli.numbers`` (finite options).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictranslate.config import SAMPLE_RATE
from musictranslate.errors import OutputError

from .conftest import make_tiny_model, tone, two_domains, write_domain
from .test_bad_input import assert_one_line_error, edit_manifest, leftovers, run, write_wav
from .test_faults import TINY, cli, error_lines

SECONDS = 0.3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_domains(tmp_path_factory.mktemp("reliability-data"))


def tiny(registry: Path) -> list[str]:
    return ["-m", "tiny", "--models", str(registry), "-q"]


def train(dataset: Path, out: Path, *extra: object):
    return run("train", dataset, "--output", out, *TINY, "--steps", 2, "--checkpoint-every", 2, *extra)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) and its bytes: what must stay as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# data loss: a writer replaces only what it wrote, and only when asked


def recordings(folder: Path) -> Path:
    folder.mkdir()
    write_wav(folder / "take1.wav", tone(SECONDS))
    (folder / "notes.txt").write_text("my session notes")
    return folder


def a_file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "make,needle",
    [(recordings, "not a model musictranslate wrote"), (a_file, "is a file, not a model")],
    ids=["folder of recordings", "existing file"],
)
def test_train_out_never_replaces_what_it_did_not_write(
    dataset: Path, tmp_path: Path, make, needle: str
) -> None:
    target = make(tmp_path / "target")
    before = tree(tmp_path)
    for extra in ((), ("--force",)):
        assert_one_line_error(train(dataset, target, *extra), str(target), needle, "nothing was changed")
    assert tree(tmp_path) == before and not (tmp_path / "target.train").exists()


def test_train_out_the_training_data_itself_is_refused(dataset: Path) -> None:
    before = tree(dataset)
    assert_one_line_error(
        train(dataset, dataset, "--force"), str(dataset), "not a model musictranslate wrote"
    )
    assert tree(dataset) == before and not dataset.with_name(dataset.name + ".train").exists()


def test_train_over_a_trained_model_needs_force_or_resume(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert train(dataset, out).exit_code == 0
    before = tree(out)
    assert_one_line_error(train(dataset, out), str(out), "a model already exists", "--resume", "--force")
    assert tree(out) == before
    result = train(dataset, out, "--force", "--seed", 1)
    assert result.exit_code == 0, result.output
    assert tree(out) != before and json.loads((out / "manifest.json").read_text())["training"]["steps"] == 2


def test_train_refuses_a_run_folder_that_is_not_a_run(dataset: Path, tmp_path: Path) -> None:
    recordings(tmp_path / "m.train")
    before = tree(tmp_path)
    assert_one_line_error(
        train(dataset, tmp_path / "m"), "m.train", "not a training run musictranslate wrote"
    )
    assert tree(tmp_path) == before


def test_report_never_writes_into_a_folder_that_is_not_a_report(registry: Path, tmp_path: Path) -> None:
    mine = recordings(tmp_path / "mine")
    before = tree(mine)
    args = ("evaluate", "report", *tiny(registry), "--data", tmp_path / "no-data", "-o", mine, "--force")
    assert_one_line_error(run(*args), str(mine), "not a report musictranslate wrote")
    assert tree(mine) == before


def test_embedding_never_overwrites_a_plot_without_force(registry: Path, tmp_path: Path) -> None:
    (tmp_path / "embedding_raw.png").write_bytes(b"my own picture")
    result = run("evaluate", "embedding", *tiny(registry), "-o", tmp_path)
    assert_one_line_error(result, "embedding_raw.png", "already exists", "--force")
    assert (tmp_path / "embedding_raw.png").read_bytes() == b"my own picture"


def test_a_name_that_appears_while_writing_is_not_replaced(tmp_path: Path) -> None:
    """No check-then-rename: the final name is created only if nobody else created it meanwhile."""
    from musictranslate.safe_write import write_atomically

    path = tmp_path / "out.wav"

    def write(temp: str) -> None:
        path.write_bytes(b"the other run's output")  # a concurrent writer finishes first
        Path(temp).write_bytes(b"ours")

    with pytest.raises(OutputError, match="already exists"):
        write_atomically(path, write, replace=False)
    assert path.read_bytes() == b"the other run's output" and os.listdir(tmp_path) == ["out.wav"]


def test_an_output_another_run_writes_meanwhile_is_kept(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs writing one output: the one that finishes second fails with "already exists"."""
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / "out.wav"
    write = sf.SoundFile.write

    def the_other_run_finishes_first(handle, data):
        out.write_bytes(b"the other run's output")
        return write(handle, data)

    monkeypatch.setattr(sf.SoundFile, "write", the_other_run_finishes_first)
    result = run("translate", source, "--to", "piano", "-o", out, *tiny(registry))
    assert_one_line_error(result, str(out), "already exists", "--force")
    assert out.read_bytes() == b"the other run's output" and sorted(os.listdir(tmp_path)) == [
        "in.wav",
        "out.wav",
    ]


@pytest.mark.parametrize("length", [241, 255])
def test_output_names_up_to_the_file_system_limit(registry: Path, tmp_path: Path, length: int) -> None:
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    out = tmp_path / ("x" * (length - 4) + ".wav")
    result = run("translate", source, "--to", "piano", "-o", out, *tiny(registry))
    assert result.exit_code == 0, result.output
    assert out.is_file() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# confinement: names from manifests and users stay inside their folders


def manifest_domain(name: str):
    def damage(manifest: dict) -> None:
        manifest["decoders"] = {name: manifest["decoders"]["piano"]}
        manifest["confusion"]["domains"] = [name]

    return damage


def weight_file(file: str):
    return lambda manifest: manifest["encoder"].update(file=file)


OUTSIDE = {
    "domain with ..": (manifest_domain("x/../../../pwned"), "'x/../../../pwned'", "not a domain name"),
    "domain with a folder": (manifest_domain("sub/x"), "'sub/x'", "not a domain name"),
    "weight file with ..": (weight_file("../../../secret.safetensors"), "secret", "not a path inside"),
    "absolute weight file": (weight_file("/etc/passwd"), "/etc/passwd", "not a path inside"),
}


@pytest.mark.parametrize("case", list(OUTSIDE))
def test_manifest_names_cannot_reach_outside_the_model(case: str, tmp_path: Path) -> None:
    damage, *needles = OUTSIDE[case]
    models = tmp_path / "models"
    edit_manifest(make_tiny_model(models / "m"), damage)
    (tmp_path / "in").mkdir()
    source = write_wav(tmp_path / "in" / "a.wav", tone(SECONDS))
    before = tree(tmp_path)
    result = run("blend", source, source, "--to", "x", "-m", "m", "--models", models, "-q")
    assert_one_line_error(result, "broken model:", "manifest.json", *needles)
    assert tree(tmp_path) == before


def test_a_weight_file_linked_out_of_the_model_is_refused(tmp_path: Path) -> None:
    folder = make_tiny_model(tmp_path / "models" / "m")
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "encoder.safetensors").rename(outside)
    (folder / "encoder.safetensors").symlink_to(outside)
    source = write_wav(tmp_path / "a.wav", tone(SECONDS))
    result = run("translate", source, "--to", "piano", "-m", folder, "-q")
    assert_one_line_error(result, "encoder.safetensors", "not a path inside the model folder")


@pytest.mark.parametrize("name", ["sub/x", "../evil", ".hidden", "a b"])
def test_add_domain_name_is_one_plain_word(registry: Path, tmp_path: Path, name: str) -> None:
    model = shutil.copytree(registry / "tiny", tmp_path / "m")
    data = tmp_path / "data"
    write_domain(data, 330)
    before = tree(tmp_path)
    result = run("add-domain", data, "--name", name, "-m", model, *TINY[2:], "--steps", 1)
    assert_one_line_error(result, repr(name), "not a domain name", "--name", code=2)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "/tmp/x"])
def test_translate_to_a_path_is_a_usage_error(registry: Path, tmp_path: Path, name: str) -> None:
    source = write_wav(tmp_path / "a.wav", tone(SECONDS))
    assert_one_line_error(
        run("translate", source, "--to", name, *tiny(registry)), "not a domain name", code=2
    )
    assert os.listdir(tmp_path) == ["a.wav"]


def test_training_data_folder_names_follow_the_domain_rule(tmp_path: Path) -> None:
    write_domain(tmp_path / "data" / "low", 220)
    write_domain(tmp_path / "data" / "my high", 880)
    result = train(tmp_path / "data", tmp_path / "m")
    assert_one_line_error(result, "my high", "rename the folder")
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------
# signals and processes


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def translating_with_workers(registry: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A translate run in a real process, once its two generation workers are busy."""
    source = write_wav(tmp_path / "long.wav", tone(8.0))
    command = [sys.executable, "-m", "musictranslate", "translate", str(source), "--to", "piano"]
    command += [*tiny(registry), "--workers", "2", "--batch-size", "4"]
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.monotonic() + 120
    while len(children(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) == 2, f"no workers started (exit {proc.poll()})"
    return proc, workers


def gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(running(p) for p in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are Linux-only")
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_a_stop_signal_ends_the_run_like_ctrl_c(
    registry: Path, tmp_path: Path, signum: int, code: int
) -> None:
    proc, workers = translating_with_workers(registry, tmp_path)
    proc.send_signal(signum)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, stderr
    (line,) = error_lines(stderr)
    assert signal.Signals(signum).name in line
    assert gone(workers) and os.listdir(tmp_path) == ["long.wav"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are Linux-only")
def test_workers_die_with_their_parent(registry: Path, tmp_path: Path) -> None:
    proc, workers = translating_with_workers(registry, tmp_path)
    proc.kill()  # no handler runs: the workers must notice by themselves
    proc.wait(timeout=60)
    assert gone(workers)


def test_a_stop_signal_during_a_save_leaves_no_temp_file(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musictranslate.stop import Stopped

    def terminated(*args, **kwargs):
        raise Stopped(signal.SIGTERM)

    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    monkeypatch.setattr(sf.SoundFile, "write", terminated)
    result = run("translate", source, "--to", "piano", *tiny(registry))
    assert_one_line_error(result, "stopped by SIGTERM", code=143)
    assert os.listdir(tmp_path) == ["in.wav"]


# --------------------------------------------------------------------------------------------
# no traceback, ever


def test_symlink_loops_in_a_folder_fail_alone(registry: Path, tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    write_wav(folder / "good.wav", tone(SECONDS))
    (folder / "loop.wav").symlink_to("loop.wav")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")
    write_wav(folder / "sub" / "inner.wav", tone(SECONDS))
    out = tmp_path / "out"
    result = run("translate", folder, "--to", "piano", "-o", out, *tiny(registry))
    line = assert_one_line_error(result, "loop.wav", "symlink loop")
    assert "Traceback" not in line
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == [
        "good_piano.wav",
        "sub/inner_piano.wav",
    ]


def test_a_looping_input_file_is_one_error(registry: Path, tmp_path: Path) -> None:
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    assert_one_line_error(
        run("translate", tmp_path / "loop.wav", "--to", "piano", *tiny(registry)), "symlink loop"
    )


def test_hidden_files_and_folders_are_skipped_by_every_scan(dataset: Path, tmp_path: Path) -> None:
    """One scanner: a macOS ``._x.wav`` (not audio at all) never reaches training."""
    data = shutil.copytree(dataset, tmp_path / "data")
    (data / "low" / "._0.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (data / "high" / ".trash").mkdir()
    (data / "high" / ".trash" / "old.wav").write_bytes(b"junk")
    result = train(data, tmp_path / "m")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    counts = manifest["training"]["domains"]
    assert manifest["training"]["skipped_files"] == 0
    assert {domain: sum(splits.values()) for domain, splits in counts.items()} == {"high": 2, "low": 2}


def sha(manifest: dict) -> None:
    del manifest["encoder"]["sha256"]


MALFORMED = {
    "missing sha256": (sha, "encoder lacks a 'sha256'"),
    "missing file": (lambda m: m["confusion"].pop("file"), "confusion lacks a 'file'"),
    "file is a number": (lambda m: m["decoders"]["piano"].update(file=7), "decoder 'piano' lacks a 'file'"),
    "decoders is a list": (lambda m: m.update(decoders=["piano"]), "'decoders' is not an object"),
    "pool of zero": (lambda m: m["architecture"].update(pool=0), "architecture 'pool' is 0"),
    "negative channels": (
        lambda m: m["architecture"].update(residual_channels=-4),
        "'residual_channels' is -4",
    ),
    "size as text": (lambda m: m["architecture"].update(decoder_layers="10"), "'decoder_layers' is 10"),
    "no domains": (lambda m: m.update(decoders={}), "decoders names no domain"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_a_broken_model(case: str, tmp_path: Path) -> None:
    damage, needle = MALFORMED[case]
    models = tmp_path / "models"
    edit_manifest(make_tiny_model(models / "m"), damage)
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    result = run("translate", source, "--to", "piano", "-m", "m", "--models", models, "-q")
    assert_one_line_error(result, "broken model:", str(models / "m" / "manifest.json"), needle, "re-install")
    assert os.listdir(tmp_path / "models") == ["m"] and not (tmp_path / "in_piano.wav").exists()


def test_models_skips_a_broken_folder_with_a_warning(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_tiny_model(models / "good")
    edit_manifest(make_tiny_model(models / "bad"), lambda m: m.update(decoders=["piano"]))
    result = run("models", "--models", models)
    assert result.exit_code == 0, result.output
    assert "good" in result.stdout and "bad" not in result.stdout
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: skipped broken model:") and "bad" in warning
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    found = run("translate", source, "--to", "piano", "-m", "good", "--models", models, "-q")
    assert found.exit_code == 0, found.output  # a lookup by name is not broken by its neighbour


def test_resume_after_a_crash_that_cut_the_last_log_line(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert run("train", dataset, "--output", out, *TINY, "--steps", 4, "--checkpoint-every", 2).exit_code == 0
    log = tmp_path / "m.train" / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 5, "reconstr')
    result = run("train", dataset, "--output", out, *TINY, "--steps", 6, "--checkpoint-every", 2, "--resume")
    assert result.exit_code == 0, result.output
    assert all(json.loads(line)["step"] <= 6 for line in log.read_text().splitlines())


NUMBERS = [
    ("translate", "--temperature", "nan"),
    ("translate", "--temperature", "-0.5"),
    ("translate", "--temperature", "inf"),
    ("translate", "--min-p", "1.5"),
    ("translate", "--min-p", "nan"),
    ("translate", "--seed", str(2**64)),
    ("translate", "--seed", "-1"),
    ("blend", "--keep", "nan"),
    ("blend", "--crossfade", "inf"),
    ("train", "--lr", "inf"),
    ("train", "--segment", "inf"),
    ("train", "--lambda", "inf"),
    ("train", "--seed", str(2**70)),
    ("report", "--seconds", "nan"),
]


@pytest.mark.parametrize("command,option,value", NUMBERS, ids=[" ".join(n) for n in NUMBERS])
def test_numeric_options_must_be_finite_and_in_range(
    registry: Path, dataset: Path, tmp_path: Path, command: str, option: str, value: str
) -> None:
    source = write_wav(tmp_path / "a.wav", tone(SECONDS))
    args = {
        "translate": ("translate", source, "--to", "piano", *tiny(registry)),
        "blend": ("blend", source, source, "--to", "piano", *tiny(registry)),
        "train": ("train", dataset, "--output", tmp_path / "m", *TINY, "--steps", 2),
        "report": ("evaluate", "report", *tiny(registry), "--data", dataset, "-o", tmp_path / "r"),
    }[command]
    assert_one_line_error(run(*args, option, value), f"{option} {value}", code=2)
    assert os.listdir(tmp_path) == ["a.wav"]


# --------------------------------------------------------------------------------------------
# messages that say what is wrong


def without_root_powers() -> tuple[str, ...]:
    """Root reads any file: as root the child runs without that power (setpriv)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: cannot make a file unreadable")
    caps = "-dac_override,-dac_read_search"
    return (setpriv, "--bounding-set", caps, "--inh-caps", caps, "--")


def test_an_unreadable_file_among_several_fails_alone(registry: Path, tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav", tone(SECONDS))
    locked = write_wav(tmp_path / "locked.wav", tone(SECONDS))
    locked.chmod(0)
    try:
        done = cli("translate", good, locked, "--to", "piano", *tiny(registry), prefix=without_root_powers())
    finally:
        locked.chmod(0o644)
    if done.stderr.startswith("setpriv:"):
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    (line,) = error_lines(done.stderr)
    assert "locked.wav" in line and "permission denied" in line
    assert (tmp_path / "good_piano.wav").is_file() and not (tmp_path / "locked_piano.wav").exists()


def header_claiming(path: Path, frames: int) -> Path:
    """A 2 kHz FLAC whose STREAMINFO claims ``frames`` samples (it holds a thousand)."""
    sf.write(path, tone(0.5, rate=2000), 2000)
    data = bytearray(path.read_bytes())
    data[8 + 13] = (data[8 + 13] & 0xF0) | (frames >> 32 & 0x0F)
    data[8 + 14 : 8 + 18] = struct.pack(">I", frames & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_more_audio_than_the_file_holds(registry: Path, tmp_path: Path) -> None:
    liar = header_claiming(tmp_path / "liar.flac", (1 << 30) - 1)  # 32 GiB at 16 kHz
    line = assert_one_line_error(run("translate", liar, "--to", "piano", *tiny(registry)), "liar.flac")
    assert "memory" not in line


def test_dc_offset_alone_is_silence(registry: Path, tmp_path: Path) -> None:
    dc = write_wav(tmp_path / "dc.wav", np.full(int(SAMPLE_RATE * SECONDS), 0.3, dtype=np.float32))
    assert_one_line_error(run("translate", dc, "--to", "piano", *tiny(registry)), "dc.wav", "silent")
    assert os.listdir(tmp_path) == ["dc.wav"]


def test_a_constant_translation_is_never_a_success(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import musictranslate.jobs

    def silence(latent, domain, *, length: int, **options) -> np.ndarray:
        return np.zeros(length, dtype=np.float32)

    monkeypatch.setattr(musictranslate.jobs, "decode", silence)
    source = write_wav(tmp_path / "in.wav", tone(SECONDS))
    assert_one_line_error(
        run("translate", source, "--to", "piano", *tiny(registry)), "in_piano.wav", "silent"
    )
    assert os.listdir(tmp_path) == ["in.wav"]


def test_evaluate_reference_on_silence_prints_no_library_warnings(tmp_path: Path) -> None:
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    out = write_wav(tmp_path / "a_piano.wav", silence)
    ref = write_wav(tmp_path / "a.wav", silence)
    done = cli("evaluate", "reference", out, ref, "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
