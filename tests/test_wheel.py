"""Test what ships: build the wheel, install it into a fresh venv (torch==2.13.0 first), and run the
installed ``musictranslate`` from another folder, with no checkout, no ``./models`` and an empty
per-user data folder -- so the only model it can find is the one inside the wheel.

While ``models/default`` has not been trained yet, a tiny random model is shipped as ``default``
instead (``MUSICTRANSLATE_SHIP_MODEL``), which still proves the packaging and the lookup; once
the trained model exists, the wheel ships it and this test translates with it.

About a minute (most of it installing torch from the local wheel); skip with ``-m "not slow"``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictranslate import __version__
from musictranslate.config import SAMPLE_RATE

from .conftest import make_tiny_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAINED = REPO / "models" / "default"
WHISTLE = REPO / "examples" / "whistle.wav"
TORCH = "torch==2.13.0"
CLIP_SECONDS = 2.0


@dataclass
class Installed:
    wheel: Path
    venv: Path
    model: Path  # the model folder the wheel was built with
    workdir: Path  # a folder far from the checkout
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The first translate after installing also compiles the fused decoder step (once)."""
        done = subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done


def _check(*args: object, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("wheel")
    build_env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICTRANSLATE_")}
    model = TRAINED
    if not (TRAINED / "manifest.json").is_file():
        model = make_tiny_model(tmp / "stand-in" / "default")
        (model / "resume.pt").write_bytes(b"training state: must not ship")
        build_env["MUSICTRANSLATE_SHIP_MODEL"] = str(model)

    dist = tmp / "dist"
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    _check(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", dist, REPO, env=build_env
    )
    (wheel,) = dist.glob("musictranslate-*.whl")

    venv = tmp / "venv"
    _check(sys.executable, "-m", "venv", venv)
    # --no-compile: byte-compiling all of torch is half the install time; imports compile what they use
    pip = [venv / "bin" / "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"]
    _check(*pip, TORCH, timeout=600)
    _check(*pip, wheel, timeout=600)

    home, workdir = tmp / "home", tmp / "elsewhere"
    workdir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MUSICTRANSLATE_", "PYTHON", "VIRTUAL_ENV"))
        and k not in ("XDG_DATA_HOME", "HOME")
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        COLUMNS="250",
    )
    yield Installed(wheel, venv, model, workdir, env)
    shutil.rmtree(venv, ignore_errors=True)  # ~1 GB of torch; pytest keeps its last temp folders


def test_the_wheel_ships_exactly_the_model_files(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    manifest = json.loads((installed.model / "manifest.json").read_text())
    weights = [manifest["encoder"], manifest["confusion"], *manifest["decoders"].values()]
    weights += [manifest["low_latency_encoder"]] if "low_latency_encoder" in manifest else []
    card = {"README.md"} if (installed.model / "README.md").is_file() else set()
    expected = {"manifest.json", *card, *(entry["file"] for entry in weights)}
    shipped = {n.removeprefix("musictranslate/_models/default/") for n in names if "/_models/" in n}
    assert shipped == expected  # the model card, no resume checkpoint, no logs
    assert not any(n.startswith(("tests/", "models/")) for n in names)


def test_installed_cli_runs_from_the_wheel_not_the_checkout(installed: Installed) -> None:
    where = installed.run(
        installed.venv / "bin" / "python", "-c", "import musictranslate; print(musictranslate.__file__)"
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    assert installed.run("musictranslate", "--version").stdout.strip() == f"musictranslate {__version__}"
    assert (
        __version__
        in installed.run(installed.venv / "bin" / "python", "-m", "musictranslate", "--version").stdout
    )
    listing = installed.run("musictranslate", "models").stdout
    assert "default" in listing and "_models" in listing
    if "low_latency_encoder" in json.loads((installed.model / "manifest.json").read_text()):
        load = "from musictranslate import load_model; print(load_model(low_latency=True).encoder.causal)"
        assert installed.run(installed.venv / "bin" / "python", "-c", load).stdout.strip() == "True"


def test_translates_the_example_whistle_with_the_shipped_model(installed: Installed) -> None:
    clip = installed.workdir / "whistle.wav"
    if WHISTLE.is_file():
        audio, rate = sf.read(WHISTLE, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)[: int(CLIP_SECONDS * rate)]
    else:  # until examples/whistle.wav exists: a whistle-like tone with vibrato
        rate, t = SAMPLE_RATE, np.arange(int(CLIP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
        audio = 0.3 * np.sin(2 * np.pi * 1200 * t + 0.8 * np.sin(2 * np.pi * 5.5 * t))
    sf.write(clip, audio, rate)
    domains = json.loads((installed.model / "manifest.json").read_text())["decoders"]
    domain = "piano" if "piano" in domains else next(iter(domains))
    done = installed.run("musictranslate", "translate", clip.name, "--to", domain, "--json", "--seed", "1")
    (record,) = json.loads(done.stdout)
    assert record["status"] == "ok", record
    out = installed.workdir / f"whistle_{domain}.wav"
    assert record["output"] == out.name and out.is_file()
    assert sf.info(out).duration == pytest.approx(len(audio) / rate, abs=0.06)
