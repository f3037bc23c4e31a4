"""Training through the CLI on tiny models and generated audio: learning, resume, add-domain."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from musictranslate.cli import app

runner = CliRunner()
STEP = ["--batch-size", "4", "--segment", "0.1", "--loader-workers", "0", "-q"]
"""Batches of the tiny tests, for ``train`` and ``add-domain`` alike."""
TINY = ["--preset", "tiny", *STEP]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_domain(folder: Path, wave: str, n_files: int = 4, seconds: float = 1.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    for i in range(n_files):
        freq = 220 * 2 ** (i / 5)
        phase = 2 * np.pi * freq * t
        signal_ = np.sin(phase) if wave == "sine" else 2 * ((freq * t) % 1.0) - 1
        sf.write(folder / f"{wave}{i}.wav", (0.4 * signal_).astype(np.float32), 16000)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_domain(root / "sine", "sine")
    write_domain(root / "saw", "saw")
    return root


def log_of(model: Path) -> list[dict]:
    path = model.with_name(model.name + ".train") / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_lowers_the_reconstruction_loss(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = run("train", dataset, "--output", out, *TINY, "--steps", "60", "--lr", "1e-2", "--no-augment")
    assert result.exit_code == 0, result.output
    losses = [r["reconstruction"] for r in log_of(out)]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 60
    assert -13.0 < manifest["training"]["input_level_db"] < -10.5  # sines and saws at 0.4 peak
    assert set(manifest["decoders"]) == {"saw", "sine"}
    assert not list(out.glob("*.pt"))  # resume state lives beside the model, not in it


def test_a_validation_folder_of_its_own(dataset: Path, tmp_path: Path) -> None:
    val = tmp_path / "val"
    write_domain(val / "sine", "sine", n_files=2, seconds=0.5)
    write_domain(val / "saw", "saw", n_files=2, seconds=0.5)
    out = tmp_path / "m"
    result = run("train", dataset, "--output", out, "--val", val, *TINY, "--steps", "2", "--val-batches", "1")
    assert result.exit_code == 0, result.output
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["domains"]["sine"] == {"train": 4, "val": 2, "test": 0}  # every data file trains
    assert set(training["val_losses"]) == {"saw", "sine"} and "validation from val" in training["split_rule"]
    # the saved validation loss is the mean of --val-batches fixed batches; it never moves training
    more = run(
        "train",
        dataset,
        "--output",
        tmp_path / "m3",
        "--val",
        val,
        *TINY,
        "--steps",
        "2",
        "--val-batches",
        "3",
    )
    assert more.exit_code == 0, more.output
    three = json.loads((tmp_path / "m3" / "manifest.json").read_text())["training"]
    assert three["val_losses"]["sine"] != pytest.approx(training["val_losses"]["sine"], abs=1e-6)
    assert (out / "encoder.safetensors").read_bytes() == (
        tmp_path / "m3" / "encoder.safetensors"
    ).read_bytes()
    result = run("train", dataset, "--output", tmp_path / "m0", *TINY, "--steps", "2", "--val-batches", "0")
    assert result.exit_code == 2 and "--val-batches 0: give at least 1" in result.output
    shutil.rmtree(val / "saw")
    result = run("train", dataset, "--output", tmp_path / "n", "--val", val, *TINY, "--steps", "2")
    assert result.exit_code == 1 and "same domain sub-folders" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_manifest_names_the_data_relative_to_the_current_folder_or_by_name(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed manifest must not carry the absolute path of the machine that trained it."""
    project = tmp_path / "project"
    shutil.copytree(dataset, project / "data" / "train")
    monkeypatch.chdir(project)
    steps = (*TINY, "--steps", "2", "--val-batches", "1")
    assert run("train", "data/train", "-o", project / "inside", *steps).exit_code == 0
    assert json.loads((project / "inside" / "manifest.json").read_text())["training"]["data"] == "data/train"
    assert run("train", dataset, "-o", project / "outside", *steps).exit_code == 0
    assert json.loads((project / "outside" / "manifest.json").read_text())["training"]["data"] == dataset.name
    added = run(
        "add-domain",
        dataset / "sine",
        "--name",
        "tone",
        "-m",
        project / "outside",
        *STEP,
        "--steps",
        "2",
        "--val-batches",
        "1",
    )
    assert added.exit_code == 0, added.output
    decoder = json.loads((project / "outside" / "manifest.json").read_text())["decoders"]["tone"]
    assert decoder["provenance"]["data"] == "sine"
    assert str(tmp_path) not in (project / "outside" / "README.md").read_text()


def test_resume_continues_exactly_like_an_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    common = (*TINY, "--checkpoint-every", "4")
    assert run("train", dataset, "--output", tmp_path / "a", *common, "--steps", "12").exit_code == 0
    assert run("train", dataset, "--output", tmp_path / "b", *common, "--steps", "8").exit_code == 0
    resumed = run("train", dataset, "--output", tmp_path / "b", *common, "--steps", "12", "--resume")
    assert resumed.exit_code == 0, resumed.output
    straight = {r["step"]: r["reconstruction"] for r in log_of(tmp_path / "a")}
    again = {r["step"]: r["reconstruction"] for r in log_of(tmp_path / "b")}
    assert {10, 12} <= set(again) & set(straight)  # logged every 10 steps and at the end
    assert again[10] == pytest.approx(straight[10], abs=1e-6)
    assert again[12] == pytest.approx(straight[12], abs=1e-6)
    for name in ("encoder.safetensors", "decoders/sine.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_run_resumed_with_other_batches_counts_the_audio_each_part_saw(
    dataset: Path, tmp_path: Path
) -> None:
    out, common = tmp_path / "m", ("--preset", "tiny", "--segment", "0.1", "--loader-workers", "0", "-q")

    def seen() -> int:
        return json.loads((out / "manifest.json").read_text())["training"]["samples_seen"]

    assert run("train", dataset, "--output", out, *common, "--batch-size", "4", "--steps", "4").exit_code == 0
    per_segment = seen() // 16  # 4 steps of 4 segments
    resumed = run("train", dataset, "--output", out, *common, "--batch-size", "2", "--steps", "6", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert seen() == (16 + 2 * 2) * per_segment  # not 6 steps x 2: the first 4 took batches of 4


def test_sigkill_mid_run_then_resume(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    cmd = [
        sys.executable,
        "-m",
        "musictranslate",
        "train",
        str(dataset),
        "--output",
        str(out),
        *TINY,
        "--steps",
        "100000",
        "--checkpoint-every",
        "3",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = out.with_name("k.train") / "checkpoint" / "state.json"
    deadline = time.time() + 300  # generous: starting torch on a loaded 2-core machine is slow
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), proc.stderr.read().decode()
    step = json.loads(checkpoint.read_text())["step"]
    result = run("train", dataset, "--output", out, *TINY, "--steps", str(step + 3), "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["training"]["steps"] == step + 3


def test_add_domain_with_output_writes_a_new_model_and_leaves_the_old_one(
    dataset: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    assert run("train", dataset, "-o", models / "m", *TINY, "--steps", "2").exit_code == 0
    before = (models / "m" / "manifest.json").read_text()
    args = ["--steps", "2", *STEP]
    result = run(
        "add-domain", dataset / "saw", "--name", "organ", "-m", "m", "--models", models, "-o", "m2", *args
    )
    assert result.exit_code == 0, result.output
    assert (models / "m" / "manifest.json").read_text() == before
    extended = json.loads((models / "m2" / "manifest.json").read_text())
    assert sorted(extended["decoders"]) == ["organ", "saw", "sine"]
    assert extended["name"] == "m2"
    again = run(
        "add-domain", dataset / "saw", "--name", "choir", "-m", "m", "--models", models, "-o", "m2", *args
    )
    assert again.exit_code == 1 and "already exists" in again.output


def test_add_domain_changes_nothing_else(dataset: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert run("train", dataset, "--output", models / "m", *TINY, "--steps", "4").exit_code == 0
    before = json.loads((models / "m" / "manifest.json").read_text())
    new = tmp_path / "organ"
    write_domain(new, "saw", n_files=2)
    result = run(
        "add-domain",
        new,
        "-m",
        "m",
        "--models",
        models,
        "--steps",
        "4",
        *STEP,
    )
    assert result.exit_code == 0, result.output
    after = json.loads((models / "m" / "manifest.json").read_text())
    assert after["encoder"] == before["encoder"] and after["confusion"] == before["confusion"]
    assert {k: v for k, v in after["decoders"].items() if k != "organ"} == before["decoders"]
    assert after["decoders"]["organ"]["provenance"]["encoder_frozen"] is True
    src = tmp_path / "in.wav"
    shutil.copy(new / "saw0.wav", src)
    out = tmp_path / "o.wav"
    assert (
        run("translate", src, "--to", "organ", "-m", "m", "--models", models, "-o", out, "-q").exit_code == 0
    )
    # resuming the joint run would re-save the folder without organ: refused, nothing changes
    result = run("train", dataset, "--output", models / "m", *TINY, "--steps", "6", "--resume")
    assert result.exit_code == 1 and "drop decoder(s) organ" in result.output and "--init" in result.output
    assert json.loads((models / "m" / "manifest.json").read_text()) == after


def test_refine_trains_an_existing_decoder_further_and_nothing_else(dataset: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    args = ["-m", "m", "--models", models, *STEP]
    trained = run(
        "train", dataset, "--output", models / "m", *TINY, "--steps", "40", "--lr", "1e-2", "--no-augment"
    )
    assert trained.exit_code == 0, trained.output
    before = json.loads((models / "m" / "manifest.json").read_text())
    joint_loss = before["training"]["losses"]["sine"]

    refine = ["add-domain", dataset / "sine", "--refine", "--lr", "1e-2", "--no-augment", *args]
    assert run(*refine, "--steps", "10").exit_code == 0
    after = json.loads((models / "m" / "manifest.json").read_text())
    assert after["encoder"] == before["encoder"] and after["confusion"] == before["confusion"]
    assert after["decoders"]["saw"] == before["decoders"]["saw"]
    assert after["decoders"]["sine"]["sha256"] != before["decoders"]["sine"]["sha256"]
    first = json.loads((models / "m.train" / "refine-sine.jsonl").read_text().splitlines()[0])
    assert first["reconstruction"] < joint_loss + 0.5 < np.log(256)  # went on from the trained weights

    assert run(*refine, "--steps", "5").exit_code == 0  # a second run goes on, the steps add up
    provenance = json.loads((models / "m" / "manifest.json").read_text())["decoders"]["sine"]["provenance"]
    assert provenance["refined"] is True and provenance["steps"] == 15
    log = [json.loads(line) for line in (models / "m.train" / "refine-sine.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [10, 15]
    # each run's fresh optimiser ramps its learning rate up from its own first step (default 300)
    assert [record["lr"] for record in log] == pytest.approx([1e-2 * 10 / 300, 1e-2 * 5 / 300])
    assert "Refined" in (models / "m" / "README.md").read_text()

    result = run("add-domain", dataset / "sine", "--refine", "--name", "organ", "--steps", "2", *args)
    assert result.exit_code == 1 and "no domain 'organ' to refine" in result.output
    result = run("add-domain", dataset / "sine", "--steps", "2", *args)
    assert result.exit_code == 1 and "--refine" in result.output


def test_resuming_the_joint_run_keeps_a_refined_decoder(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert (
        run("train", dataset, "--output", out, *TINY, "--steps", "3", "--checkpoint-every", "3").exit_code
        == 0
    )
    refine = ["add-domain", dataset / "sine", "--refine", "-m", out, "--steps", "3", "--lr", "1e-2"]
    assert run(*refine, *STEP).exit_code == 0
    refined = load_file(out / "decoders" / "sine.safetensors")
    # a learning rate too small to move anything: what the resumed run saves is what it started from
    resumed = run("train", dataset, "--output", out, *TINY, "--steps", "4", "--lr", "1e-12", "--resume")
    assert resumed.exit_code == 0, resumed.output
    after = load_file(out / "decoders" / "sine.safetensors")
    assert all(torch.allclose(after[k], refined[k], atol=1e-6) for k in refined)
    assert json.loads((out / "manifest.json").read_text())["training"]["refined_steps"] == {"sine": 3}
    assert "Refined alone" in (out / "README.md").read_text()


def test_init_starts_a_new_run_from_a_trained_models_weights(dataset: Path, tmp_path: Path) -> None:
    first, second, fresh = tmp_path / "first", tmp_path / "second", tmp_path / "fresh"
    args = [*TINY, "--no-augment", "--checkpoint-every", "1"]
    assert run("train", dataset, "--output", first, *args, "--steps", "30", "--lr", "1e-2").exit_code == 0
    trained = json.loads((first / "manifest.json").read_text())["training"]["val_losses"]
    # a step per domain at a learning rate too small to move anything: the new run holds the first's weights
    tiny_step = ["--steps", "2", "--lr", "1e-12"]
    started = run("train", dataset, "--output", second, *args, *tiny_step, "--init", first)
    assert started.exit_code == 0, started.output
    assert run("train", dataset, "--output", fresh, *args, *tiny_step).exit_code == 0
    for name in ("encoder.safetensors", "confusion.safetensors", "decoders/sine.safetensors"):
        before, after = load_file(first / name), load_file(second / name)
        assert all(torch.allclose(after[k], before[k], atol=1e-6) for k in before)
    losses = {
        m: json.loads((m / "manifest.json").read_text())["training"]["val_losses"] for m in (second, fresh)
    }
    for domain, loss in trained.items():  # it starts where the first left off, not from noise
        assert abs(losses[second][domain] - loss) < 0.05 and losses[fresh][domain] > loss + 0.5
    lineage = json.loads((second / "manifest.json").read_text())["training"]["initialised_from"]
    assert lineage["model"] == "first" and lineage["steps"] == 30 and lineage["confusion"] is True
    assert "Started from the weights of model `first` (30 steps" in (second / "README.md").read_text()
    # going on with --resume keeps the record of where the run started
    assert run("train", dataset, "--output", second, *args, "--steps", "3", "--resume").exit_code == 0
    assert json.loads((second / "manifest.json").read_text())["training"]["initialised_from"] == lineage

    other = [a if a != "tiny" else "small" for a in TINY]
    result = run("train", dataset, "--output", tmp_path / "x", *other, "--steps", "1", "--init", first)
    assert result.exit_code == 1 and "pass --preset tiny" in result.output
    result = run("train", dataset, "--output", second, *args, "--steps", "9", "--resume", "--init", first)
    assert result.exit_code == 2 and "give one" in result.output
    result = run(
        "train", dataset, "--output", tmp_path / "y", *args, "--steps", "1", "--init", tmp_path / "no"
    )
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_bad_training_input_gives_one_line_errors(dataset: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_domain(one / "sine", "sine", n_files=2)
    result = run("train", one, "--output", tmp_path / "x", *TINY, "--steps", "2")
    assert result.exit_code == 1 and "at least two" in result.output
    (one / "empty").mkdir()
    result = run("train", one, "--output", tmp_path / "x", *TINY, "--steps", "2")
    assert result.exit_code == 1 and "no audio files" in result.output
    result = run("train", dataset, "--output", tmp_path / "x", *TINY, "--steps", "2", "--resume")
    assert result.exit_code == 1 and "no checkpoint" in result.output
    assert run("train", dataset, "--output", tmp_path / "y", *TINY, "--steps", "2").exit_code == 0
    args = [a if a != "tiny" else "small" for a in TINY]
    result = run("train", dataset, "--output", tmp_path / "y", *args, "--steps", "4", "--resume")
    assert result.exit_code == 1 and "another architecture" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun not installed",
)
def test_two_gloo_processes_with_torchrun(dataset: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "musictranslate",
        "train",
        str(dataset),
        "--output",
        str(out),
        *TINY,
        "--steps",
        "4",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=180)
    finally:  # never leave ranks behind, even when one hangs
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2 and manifest["training"]["steps"] == 4


def test_out_by_name_goes_to_the_registry_and_is_listed(dataset: Path, tmp_path: Path) -> None:
    models = tmp_path / "registry"
    result = run("train", dataset, "--output", "named", "--models", models, *TINY, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert (models / "named" / "manifest.json").is_file()
    listing = run("models", "--models", models)
    assert "named" in listing.output and "saw, sine" in listing.output


@pytest.fixture(scope="module")
def parallel_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same notes in two domains under the same file names, as `make data` renders them."""
    root = tmp_path_factory.mktemp("parallel")
    for wave in ("sine", "saw"):
        write_domain(root / wave, wave)
        for path in (root / wave).iterdir():
            path.rename(path.with_name(path.name.replace(wave, "tone")))
    return root


def test_parallel_batches_encode_the_same_moment_of_another_domain(parallel_dataset: Path) -> None:
    from musictranslate.audio import companded, mu_law_encode
    from musictranslate.data import Augmentation, DomainBatches, open_sources, scan_domains

    files = scan_domains(parallel_dataset)
    sources = [open_sources(found, 1600)[0] for found in files.values()]
    saw, sine = list(files).index("saw"), list(files).index("sine")
    batches = DomainBatches(sources, 8, 1600, seed=3, augmentation=Augmentation(enabled=False), parallel=1.0)
    domain, input_domains, encoder_input, target = batches[sine]
    assert domain == sine and (input_domains == saw).all()
    for row in range(8):
        # find where the sine target sits in its file, then check the input is the saw's same stretch
        clean = target[row].numpy()
        for index, source in enumerate(sources[sine]):
            audio = mu_law_encode(source.read(0, source.length))
            hits = [s for s in range(source.length - 1600 + 1) if (audio[s : s + 1600] == clean).all()]
            if hits:
                partner = sources[saw][index]
                assert partner.path.stem == source.path.stem
                expected = companded(mu_law_encode(partner.read(hits[0], 1600)))
                assert torch.equal(encoder_input[row], torch.from_numpy(expected))
                break
        else:
            pytest.fail("the target is from no sine file")
    unpaired = DomainBatches(sources, 8, 1600, seed=3, augmentation=Augmentation(enabled=False))
    assert (unpaired[sine][1] == sine).all()  # without --parallel: the paper's autoencoder


def test_parallel_training_lowers_the_loss(parallel_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = (
        "train",
        parallel_dataset,
        "--output",
        out,
        *TINY,
        "--steps",
        "60",
        "--lr",
        "1e-2",
        "--no-augment",
    )
    result = run(*args, "--parallel", "1")
    assert result.exit_code == 0, result.output
    losses = [r["reconstruction"] for r in log_of(out)]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["options"]["parallel"] == 1.0
    bad = run(*args[:3], tmp_path / "other", *TINY, "--parallel", "1.5")
    assert bad.exit_code == 2 and "--parallel" in bad.output


def test_decoder_noise_training_lowers_the_loss_and_corrupts_only_the_past(
    dataset: Path, tmp_path: Path
) -> None:
    from musictranslate.train_step import noisy_past

    target = torch.randint(0, 256, (4, 2000))
    past = noisy_past(target, 0.05, 256)
    assert past.shape == target.shape and past.min() >= 0 and past.max() <= 255
    assert (past != target).float().mean() > 0.5 and (past - target).abs().float().mean() < 10
    assert torch.equal(noisy_past(target, 0.0, 256), target)
    out = tmp_path / "m"
    args = ("train", dataset, "-o", out, *TINY, "--steps", "60", "--lr", "1e-2", "--no-augment")
    result = run(*args, "--decoder-noise", "0.05")
    assert result.exit_code == 0, result.output
    losses = [r["reconstruction"] for r in log_of(out)]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5
    assert json.loads((out / "manifest.json").read_text())["training"]["options"]["decoder_noise"] == 0.05
    bad = run(*args[:3], tmp_path / "other", *TINY, "--decoder-noise", "2")
    assert bad.exit_code == 2 and "--decoder-noise" in bad.output
