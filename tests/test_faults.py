"""Faults that need a real process or a training run: a full disk, a read-only folder, memory on
hours-long files, a checkpoint write that dies half way, a loss that diverges, bad options.

The same rules as ``test_bad_input.py``: one ``error:`` line per failure on stderr, naming the
file and what to do; a non-zero exit; no traceback; nothing half-written left behind. Cases
covered elsewhere: SIGKILL at a random moment of a run, then resume
(``test_train.test_sigkill_mid_run_then_resume``); a missing checkpoint, one domain, an empty domain
folder and another architecture on resume (``test_train.test_bad_training_input_gives_one_line_errors``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from musictranslate.cli import app
from musictranslate.config import SAMPLE_RATE
from musictranslate.train_step import Trainer

from .conftest import make_tiny_model, tone
from .test_bad_input import assert_one_line_error, leftovers, random_bytes

runner = CliRunner()
TINY = [
    "--preset",
    "tiny",
    "--batch-size",
    "2",
    "--segment",
    "0.1",
    "--loader-workers",
    "0",
    "--no-augment",
    "-q",
]


def tiny(registry: Path) -> list[str]:
    """Arguments selecting the session's tiny test model, quietly."""
    return ["-m", "tiny", "--models", str(registry), "-q"]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def cli(*args: object, prefix: tuple[str, ...] = (), preexec=None) -> subprocess.CompletedProcess:
    """The installed command line in a fresh process, as a user runs it."""
    command = [*prefix, sys.executable, "-m", "musictranslate", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, preexec_fn=preexec)


def error_lines(stderr: str) -> list[str]:
    """stderr of a real process: nothing but ``error:`` lines (no traceback, no library chatter)."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and all(line.startswith("error: ") for line in lines), stderr
    return lines


# --------------------------------------------------------------------------------------------
# output in a real process


def limit_file_size() -> None:
    """In the child: any file past 8 kB fails with EFBIG, as a write to a full disk does."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))


def test_full_disk_and_a_chatty_decoder_in_a_real_process(registry: Path, tmp_path: Path) -> None:
    """libsndfile's own failure on a real short write, and libmpg123's notes on fd 2 while it
    rejects random bytes: one error line per failed input, nothing partial left behind."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(1.0), SAMPLE_RATE)  # 32 kB of output: past the limit
    noise = random_bytes(tmp_path / "noise.mp3")
    out = tmp_path / "out"
    done = cli("translate", good, noise, "--to", "piano", "-o", out, *tiny(registry), preexec=limit_file_size)
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 2, done.stderr
    written = next(line for line in lines if "good_piano.wav" in line)
    assert "could not write" in written and "is the disk full" in written
    assert any(str(noise) in line and "not a readable audio file" in line for line in lines)
    assert not (out / "good_piano.wav").exists() and leftovers(tmp_path) == []


def test_read_only_output_folder_fails_before_any_work(registry: Path, tmp_path: Path) -> None:
    """Root ignores folder permissions, so as root the child runs without that power (setpriv)."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot make a folder read-only")
        caps = "-dac_override,-dac_read_search"
        prefix = (setpriv, "--bounding-set", caps, "--inh-caps", caps, "--")
    source = tmp_path / "in.wav"
    sf.write(source, tone(0.3), SAMPLE_RATE)
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = cli("translate", source, "--to", "piano", "-o", folder, *tiny(registry), prefix=prefix)
    finally:
        folder.chmod(0o755)
    if done.stderr.startswith("setpriv:"):
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert str(folder) in line and "not writable" in line and "choose another -o folder" in line
    assert list(folder.iterdir()) == []


def test_outputs_and_models_get_the_usual_permissions(registry: Path, tmp_path: Path) -> None:
    """Temp files are private (0600); what is renamed into place must follow the umask instead."""
    source = tmp_path / "in.wav"
    sf.write(source, tone(0.3), SAMPLE_RATE)
    out = tmp_path / "shared.wav"
    assert run("translate", source, "--to", "piano", "-o", out, *tiny(registry)).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
    model = make_tiny_model(tmp_path / "models" / "m")
    assert model.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (model / "encoder.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------------------------
# memory on long files

MEMORY_CHILD = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from musictranslate import load_audio, load_model
from musictranslate.audio import check_audible, save_audio
from musictranslate.loudness import match_loudness
from musictranslate.input_fit import fit_input
from musictranslate.translation import encode

def peak_since_reset():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

model = load_model(sys.argv[2])
short = (0.3 * np.sin(np.arange(16000, dtype=np.float32))).astype(np.float32)
encode(fit_input(short, -20.0).audio, model=model); match_loudness(short, short)  # warm up torch, librosa
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident size to what is resident now
base = peak_since_reset()
audio = load_audio(sys.argv[1])
check_audible(audio, sys.argv[1], model.config.pool)
latent = encode(fit_input(audio, -20.0).audio, model=model)
read_and_encode = peak_since_reset() - base
output = np.ascontiguousarray(audio[::-1])  # stands in for the decoder's output: as long as the input
output = match_loudness(output, audio)
save_audio(sys.argv[3], output)
whole = peak_since_reset() - base
print(json.dumps({"bytes": audio.nbytes, "read_and_encode": read_and_encode, "whole": whole}))
"""


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory"
)
def test_a_long_file_needs_the_audio_plus_bounded_working_memory(registry: Path, tmp_path: Path) -> None:
    """A 20-minute file (19.2 M samples, 77 MB as float32), read, checked, fitted to a level and
    encoded in a child process whose peak resident memory is measured from just before reading.

    Bounds, with N the float32 size of the audio: reading, fitting and encoding may take 2 N (the
    input and its level-fitted copy) plus 48 MB of working memory (chunked reading, chunked
    mu-law and encoding; a float64 copy or a third float32 copy would break it); the rest of the
    translate path -- loudness matching and the atomic write of an output as long as the input --
    may hold the input, the output and one scaled copy (3 N) plus the same 48 MB. For a 2-hour
    file that is 920 MB + 48 MB to read, fit and encode. Generation runs segment batches one at
    a time (``generate.generate``) and is not part of this measurement: a tiny model needs
    minutes to generate 20 minutes of audio.
    """
    long = tmp_path / "long.wav"
    with sf.SoundFile(long, "w", SAMPLE_RATE, 1, "PCM_16") as handle:
        minute = (0.3 * np.sin(2 * np.pi * 440 * np.arange(60 * SAMPLE_RATE) / SAMPLE_RATE)).astype(
            np.float32
        )
        for _ in range(20):
            handle.write(minute)
    child = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(long), str(registry / "tiny"), str(tmp_path / "out.wav")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert child.returncode == 0, child.stderr[-2000:]
    measured = json.loads(child.stdout)
    audio, working = measured["bytes"], 48 * 2**20
    assert audio == 20 * 60 * SAMPLE_RATE * 4
    assert measured["read_and_encode"] <= 2 * audio + working, measured
    assert measured["whole"] <= 3 * audio + working, measured
    assert sf.info(tmp_path / "out.wav").frames == 20 * 60 * SAMPLE_RATE


# --------------------------------------------------------------------------------------------
# training


def write_domain(folder: Path, freq: float, files: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sf.write(folder / f"{i}.wav", tone(0.5, freq * (i + 1)), SAMPLE_RATE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults-data")
    write_domain(root / "low", 220)
    write_domain(root / "high", 880)
    return root


def train(dataset: Path, out: Path, steps: int, *extra: object):
    return run("train", dataset, "--output", out, *TINY, "--steps", steps, "--checkpoint-every", 2, *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A model trained for 2 steps and its checkpoint folder."""
    out = tmp_path / "m"
    result = train(dataset, out, 2)
    assert result.exit_code == 0, result.output
    return out, out.with_name("m.train") / "checkpoint"


@pytest.mark.parametrize(
    "error,code,needles",
    [
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
            1,
            ["No space left on device", "previous version is kept"],
        ),
        (KeyboardInterrupt(), 130, ["interrupted"]),
    ],
    ids=["disk full", "interrupted"],
)
def test_checkpoint_write_dying_half_way_keeps_the_previous_one(
    dataset: Path, trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, error, code, needles
) -> None:
    out, checkpoint = trained
    before = snapshot(checkpoint)

    def dies_half_way(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"the first half of a checkpoint")
        raise error

    monkeypatch.setattr("musictranslate.checkpoint.save_file", dies_half_way)
    assert_one_line_error(train(dataset, out, 4, "--resume"), *needles, code=code)
    assert snapshot(checkpoint) == before
    assert not [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")]  # no staging left
    monkeypatch.undo()
    resumed = train(dataset, out, 4, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4


def test_killed_between_the_two_renames_resumes_from_the_old_checkpoint(
    dataset: Path, trained: tuple[Path, Path]
) -> None:
    out, checkpoint = trained
    old = checkpoint.with_name(".checkpoint.old")
    os.replace(checkpoint, old)  # what a kill between "checkpoint -> .old" and "staging -> checkpoint" leaves
    resumed = train(dataset, out, 4, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4 and not old.exists()


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    dataset: Path, trained: tuple[Path, Path]
) -> None:
    out, checkpoint = trained
    before, model = snapshot(checkpoint), snapshot(out)
    diverged = train(dataset, out, 6, "--resume", "--lr", "1e30")  # Adam steps ~lr: overflow at once
    line = assert_one_line_error(
        diverged, f"the last good checkpoint (step 2) is kept in {checkpoint}", "lower --lr"
    )
    assert re.search(r"loss became (nan|-?inf) at step 3;", line), line
    assert snapshot(checkpoint) == before and snapshot(out) == model
    resumed = train(dataset, out, 4, "--resume")
    assert resumed.exit_code == 0, resumed.output


def test_weights_that_overflow_are_never_checkpointed(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss can still be finite on the step whose update overflowed a weight."""
    real_step = Trainer.step

    def overflowing(self, step, *args):
        stats = real_step(self, step, *args)
        with torch.no_grad():
            next(self.confusion.parameters()).fill_(float("inf"))
        return stats

    monkeypatch.setattr(Trainer, "step", overflowing)
    out = tmp_path / "m"
    result = train(dataset, out, 2)
    assert_one_line_error(
        result, "became non-finite at step 2", "no checkpoint was written yet", "lower --lr"
    )
    assert not out.exists() and not (out.with_name("m.train") / "checkpoint").exists()


def test_truncated_resume_checkpoint_says_how_to_start_over(
    dataset: Path, trained: tuple[Path, Path]
) -> None:
    out, checkpoint = trained
    state = checkpoint / "state.safetensors"
    state.write_bytes(state.read_bytes()[:1000])
    result = train(dataset, out, 4, "--resume")
    assert_one_line_error(
        result, str(checkpoint), "truncated or corrupt", f"delete {checkpoint.parent} to start over"
    )


@pytest.mark.parametrize(
    "option,value",
    [
        ("--checkpoint-every", "0"),
        ("--batch-size", "0"),
        ("--lr", "-1"),
        ("--segment", "0"),
        ("--loader-workers", "-1"),
        ("--device", "tpu"),
    ],
)
def test_impossible_training_options_are_usage_errors(
    dataset: Path, tmp_path: Path, option: str, value: str
) -> None:
    args = [a for a in TINY if a not in ("--loader-workers", "0")] if option == "--loader-workers" else TINY
    result = run("train", dataset, "--output", tmp_path / "m", *args, "--steps", "2", option, value)
    assert_one_line_error(result, f"{option} {value}", code=2)
    assert not (tmp_path / "m").exists()


def test_nan_samples_in_training_data_do_not_crash_the_loss(tmp_path: Path) -> None:
    """NaN would become a garbage class index (an out-of-range target); it trains as silence."""
    data = tmp_path / "data"
    write_domain(data / "clean", 440)
    (data / "broken").mkdir()
    sf.write(
        data / "broken" / "nan.wav",
        np.full(SAMPLE_RATE // 2, np.nan, np.float32),
        SAMPLE_RATE,
        subtype="FLOAT",
    )
    result = run("train", data, "--output", tmp_path / "m", *TINY, "--steps", "2")
    assert result.exit_code == 0, result.output
