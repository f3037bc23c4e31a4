"""``musictranslate live`` without audio hardware: files, WAV pipes, and every way it can stop."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictranslate import load_model
from musictranslate.config import SAMPLE_RATE
from musictranslate.live import FileSink, LiveError, WavPipeSink, WavPipeSource, run_live
from musictranslate.stream import TranslationStream

from .conftest import tone


def live(registry: Path, *args: object, stdin: bytes | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The command in a fresh process, as a user runs it, on the session's tiny model."""
    command = [sys.executable, "-m", "musictranslate", "live", "--to", "piano", "-m", "tiny"]
    command += ["--models", str(registry), "--seed", "3", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, input=stdin, capture_output=True, timeout=300, env=env, **kwargs)


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def tune(tmp_path: Path) -> Path:
    path = tmp_path / "tune.wav"
    sf.write(path, tone(1.0, 330.0), SAMPLE_RATE)
    return path


def test_file_to_file_prints_latency_and_writes_the_whole_input(
    registry: Path, tune: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.wav"
    result = live(registry, "--input", tune, "--output", out)
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert "latency" in stderr and "underrun" in stderr and "real time" in stderr
    written, rate = sf.read(out)
    assert rate == SAMPLE_RATE and len(written) == SAMPLE_RATE and np.abs(written).max() > 0


def test_a_wav_pipe_gives_what_the_file_gives(registry: Path, tune: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    assert live(registry, "-i", tune, "-o", out, "-q").returncode == 0
    audio, _ = sf.read(tune, dtype="float32")
    piped = live(registry, "--input", "-", "--output", "-", "-q", stdin=wav_bytes(audio))
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    header, pcm = piped.stdout[:44], piped.stdout[44:]
    assert header[:4] == b"RIFF" and header[36:40] == b"data"
    from_pipe = np.frombuffer(pcm, dtype="<i2")
    from_file, _ = sf.read(out, dtype="int16")
    assert np.array_equal(from_pipe, from_file)


def test_a_pipe_at_another_rate_is_resampled(registry: Path) -> None:
    stereo = np.stack([tone(0.5, 330.0, 44100)] * 2, axis=1)
    result = live(registry, "-i", "-", "-o", "-", "-q", stdin=wav_bytes(stereo, 44100))
    assert result.returncode == 0, result.stderr
    assert abs((len(result.stdout) - 44) // 2 - SAMPLE_RATE // 2) <= 2


def test_without_an_audio_device_the_error_says_what_to_use(registry: Path, tune: Path) -> None:
    result = live(registry, "--input", tune)  # the output is the default device; CI has none
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--output FILE|-" in lines[0], lines


def test_a_reader_that_closes_the_pipe_stops_it_cleanly(registry: Path, tmp_path: Path) -> None:
    long_input = tmp_path / "long.wav"
    sf.write(long_input, tone(20.0, 330.0), SAMPLE_RATE)
    command = [sys.executable, "-m", "musictranslate", "live", "--to", "piano", "-m", "tiny"]
    command += ["--models", str(registry), "-i", str(long_input), "-o", "-", "-q"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.read(1000)
        process.stdout.close()  # the reader goes away
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1
    assert stderr.strip().splitlines() == ["error: output pipe closed by the reader; stopped"]


def test_ctrl_c_exits_130_and_writes_no_file(registry: Path, tmp_path: Path) -> None:
    long_input, out = tmp_path / "long.wav", tmp_path / "out.wav"
    sf.write(long_input, tone(600.0, 330.0), SAMPLE_RATE)
    command = [sys.executable, "-m", "musictranslate", "live", "--to", "piano", "-m", "tiny"]
    command += ["--models", str(registry), "-i", str(long_input), "-o", str(out)]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        assert "latency" in process.stderr.readline()  # the run has started
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 130
    assert stderr.strip().splitlines() == ["error: interrupted"]
    assert list(tmp_path.iterdir()) == [long_input]  # no output, no temp file


def test_bad_inputs_are_one_line_errors(registry: Path, tune: Path, tmp_path: Path) -> None:
    not_wav = live(
        registry, "-i", "-", "-o", tmp_path / "x.wav", stdin=b"hello, this is not a WAV file at all"
    )
    assert not_wav.returncode == 1 and b"not a PCM WAV stream" in not_wav.stderr
    existing = live(registry, "-i", tune, "-o", tune)
    assert existing.returncode == 1 and b"already exists" in existing.stderr
    missing = live(registry, "-i", tmp_path / "nope.wav", "-o", tmp_path / "y.wav")
    assert missing.returncode == 1 and len(missing.stderr.decode().strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "y.wav").exists()


@pytest.mark.parametrize("threaded", [True, False])
def test_run_live_counts_underruns_when_translation_is_slower_than_the_input(
    registry: Path, threaded: bool
) -> None:
    stream = TranslationStream("piano", model=load_model(registry / "tiny"))
    real_encode = stream.encode

    def slow(chunk: np.ndarray) -> list:
        time.sleep(2 * len(chunk) / SAMPLE_RATE)  # half real time
        return real_encode(chunk)

    stream.encode = slow  # type: ignore[method-assign]
    source = WavPipeSource(io.BytesIO(wav_bytes(tone(0.5, 330.0))))
    sink = WavPipeSink(io.BytesIO())
    report = run_live(stream, source, sink, buffer_ms=10, threaded=threaded)
    assert report.underruns > 0 and report.realtime_factor < 1
    assert report.latency_max_ms > report.algorithmic_latency_ms


def test_the_encoder_thread_changes_nothing_in_the_output(registry: Path) -> None:
    model = load_model(registry / "tiny")
    outputs = []
    for threaded in (True, False):
        buffer = io.BytesIO()
        source = WavPipeSource(io.BytesIO(wav_bytes(tone(0.7, 330.0))))
        stream = TranslationStream("piano", model=model, temperature=1.0, seed=2)
        report = run_live(stream, source, WavPipeSink(buffer), threaded=threaded)
        assert report.seconds == pytest.approx(0.7, abs=1e-3)
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1] and len(outputs[0]) == 44 + 2 * int(0.7 * SAMPLE_RATE)


def test_an_error_in_the_encoder_thread_reaches_the_caller(registry: Path) -> None:
    stream = TranslationStream("piano", model=load_model(registry / "tiny"))

    def broken(chunk: np.ndarray) -> list:
        raise RuntimeError("encoder exploded")

    stream.encode = broken  # type: ignore[method-assign]
    source = WavPipeSource(io.BytesIO(wav_bytes(tone(0.2, 330.0))))
    with pytest.raises(RuntimeError, match="encoder exploded"):
        run_live(stream, source, WavPipeSink(io.BytesIO()))


def test_file_sink_refuses_what_it_could_not_write_before_running(tmp_path: Path) -> None:
    with pytest.raises(LiveError, match="does not exist"):
        FileSink(tmp_path / "missing" / "out.wav")
    with pytest.raises(LiveError, match="cannot write"):
        FileSink(tmp_path / "out.xyz")
