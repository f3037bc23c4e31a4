"""Live translation: an input (audio device, file or WAV pipe) through a ``TranslationStream`` to
an output (audio device, file or WAV pipe), with its latency measured and underruns counted.

Devices go through PortAudio (the ``sounddevice`` binding, imported only when a device is used,
so files and pipes work where PortAudio or a sound card is missing). A device runs at its own
rate; soxr resamples to and from the model's rate on the fly.

Latency is stated two ways. *Algorithmic*: what the method needs before it can play a sample --
a latent frame, the encoder's look-ahead and one encoder block -- plus the output buffer that
absorbs the time to generate a frame. *Measured*: for every translated block, when it was ready
against when its first input sample came in; for a file or a pipe the input is timed as if it
arrived in real time, so a file run shows what a device run would: an *underrun* is a block
that would have been ready after the output had to play it (on a device: the output ran dry).
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import soundfile as sf
import soxr
import torch

from .audio import load_audio, save_audio
from .config import SAMPLE_RATE
from .errors import MusicTranslateError
from .stream import TranslationStream

READ_BLOCK = 320
"""Input samples (20 ms at 16 kHz) handed to the stream at a time."""
DEFAULT_BUFFER_MS = 80.0
"""Output buffer beyond the algorithmic latency: time to generate one frame, with margin."""
DEFAULT_LOW_LATENCY_BUFFER_MS = 40.0
"""The same with the low-latency encoder, whose point is a short total: a frame takes about
20 ms to generate on one core, and the encoder runs a block ahead in its own thread."""
DEVICE_TIMEOUT_SECONDS = 2.0
"""An input device that delivers nothing for this long has stopped (unplugged, taken)."""
ENCODED_AHEAD = 64
"""Encoded blocks the encoder thread may hold ahead of the decoder (a file is read faster than
real time; this bounds the memory)."""
WAV_STREAM_SIZE = 0xFFFFFFFF
"""RIFF and data sizes of a WAV written to a pipe, whose length is unknown until it ends."""


class LiveError(MusicTranslateError):
    """A device, pipe or stream that cannot be used or stopped working."""


class Source(Protocol):
    def read(self) -> np.ndarray | None:
        """The next block of mono float32 at ``SAMPLE_RATE``; None at the end."""

    def close(self) -> None: ...


class Sink(Protocol):
    def write(self, audio: np.ndarray) -> None: ...

    def commit(self) -> None:
        """The stream ended: make the output whole (a file is written only now)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class LiveReport:
    """What a live run measured. Latencies in milliseconds, over the translated blocks."""

    seconds: float  # audio translated
    wall_seconds: float
    realtime_factor: float  # audio seconds per wall second of the run (above 1: keeps up)
    cpu_realtime_factor: float  # per CPU second of the busiest thread: what a free core gives
    algorithmic_latency_ms: float  # frame + encoder look-ahead + one encoder block
    buffer_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    jitter_ms: float  # standard deviation of the measured latency
    underruns: int
    blocks: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"translated {self.seconds:.1f} s at {self.realtime_factor:.2f}x real time "
            f"({self.cpu_realtime_factor:.2f}x per CPU second); latency "
            f"p50 {self.latency_p50_ms:.0f} ms, p99 {self.latency_p99_ms:.0f} ms, max "
            f"{self.latency_max_ms:.0f} ms, jitter {self.jitter_ms:.1f} ms; {self.underruns} underrun(s)"
        )


def default_buffer_ms(stream: TranslationStream) -> float:
    """The output buffer a stream gets unless the user sets one: shorter for a causal encoder."""
    return DEFAULT_LOW_LATENCY_BUFFER_MS if stream.model.encoder.causal else DEFAULT_BUFFER_MS


def describe_latency(stream: TranslationStream, buffer_ms: float) -> str:
    """The algorithmic latency, term by term, for the start-up line."""
    ms = 1000 / SAMPLE_RATE
    frame, ahead, block = stream.pool * ms, stream.encoder.lookahead * ms, (stream.block - 1) * ms
    total = stream.latency_samples * ms + buffer_ms
    return (
        f"latency {total:.0f} ms: frame {frame:.0f} + encoder look-ahead {ahead:.0f} + block "
        f"{block:.0f} + buffer {buffer_ms:.0f} ms"
    )


@dataclass(frozen=True)
class _Encoded:
    """The latent frames one input block completed, and what encoding it cost."""

    received: int  # input samples handed to the stream so far
    frames: list[torch.Tensor]
    seconds: float
    cpu: float


class _Meter:
    """Per block: when it was ready against when its first input sample arrived."""

    def __init__(self, stream: TranslationStream, buffer_ms: float, paced: bool) -> None:
        self.paced, self.started = paced, time.perf_counter()
        self.deadline = stream.latency_samples / SAMPLE_RATE + buffer_ms / 1000
        self.latencies: list[float] = []
        self.ready = 0.0  # when the last block was ready, on the input's clock
        self.encoder_cpu = self.decoder_cpu = 0.0
        self.underruns = 0

    def record(self, encoded: _Encoded, first: int, count: int, seconds: float, cpu: float) -> None:
        """``encoded``'s frames took ``seconds`` (``cpu`` of them on this thread) to decode into
        ``count`` samples from output sample ``first`` on."""
        self.encoder_cpu += encoded.cpu
        self.decoder_cpu += cpu
        if self.paced:  # a device: the clock is the wall clock
            self.ready = time.perf_counter() - self.started
        else:  # a file or pipe, timed as if its samples arrived in real time
            arrived = encoded.received / SAMPLE_RATE + encoded.seconds
            self.ready = max(arrived, self.ready) + seconds
        if count:
            latency = self.ready - first / SAMPLE_RATE
            self.latencies.append(latency)
            if not self.paced and latency > self.deadline:
                self.underruns += 1

    def report(
        self, stream: TranslationStream, buffer_ms: float, threaded: bool, device_underruns: int
    ) -> LiveReport:
        seconds = stream.received / SAMPLE_RATE
        wall = time.perf_counter() - self.started
        ms = np.array(self.latencies or [math.nan]) * 1000
        cpu = max(self.encoder_cpu, self.decoder_cpu) if threaded else self.encoder_cpu + self.decoder_cpu
        return LiveReport(
            seconds=seconds,
            wall_seconds=wall,
            realtime_factor=seconds / wall,
            cpu_realtime_factor=seconds / cpu if cpu else math.inf,
            algorithmic_latency_ms=stream.latency_samples * 1000 / SAMPLE_RATE,
            buffer_ms=buffer_ms,
            latency_p50_ms=float(np.percentile(ms, 50)),
            latency_p99_ms=float(np.percentile(ms, 99)),
            latency_max_ms=float(ms.max()),
            jitter_ms=float(ms.std()),
            underruns=self.underruns + device_underruns,
            blocks=len(self.latencies),
        )


def _encoded(
    stream: TranslationStream, source: Source, stop: threading.Event, threaded: bool
) -> Iterator[_Encoded]:
    """The source's blocks encoded, in order, then the end of the stream. ``threaded``: the
    encoder runs in its own thread (the second core), up to ``ENCODED_AHEAD`` blocks ahead of
    the decoder; the output is the same either way."""

    def encode(chunk: np.ndarray | None) -> _Encoded:
        started, cpu = time.perf_counter(), time.thread_time()
        frames = stream.encode(chunk) if chunk is not None else stream.encode_end()
        return _Encoded(stream.received, frames, time.perf_counter() - started, time.thread_time() - cpu)

    def blocks() -> Iterator[np.ndarray | None]:
        while not stop.is_set() and (chunk := source.read()) is not None:
            yield chunk
        yield None

    if not threaded:
        yield from map(encode, blocks())
        return
    results: queue.Queue[_Encoded | BaseException | None] = queue.Queue(maxsize=ENCODED_AHEAD)

    def work() -> None:
        try:
            for chunk in blocks():
                results.put(encode(chunk))
            results.put(None)
        except BaseException as exc:  # handed to the decoding thread, which raises it
            results.put(exc)

    worker = threading.Thread(target=work, name="musictranslate-encoder", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        _stop_encoder(worker, results, stop)


ENCODER_STOP_SECONDS = 5.0
"""How long an early stop waits for the encoder thread to finish its block (a device read times
out well within it)."""


def _stop_encoder(worker: threading.Thread, results: queue.Queue, stop: threading.Event) -> None:
    """Stop the encoder thread and wait for it, emptying the queue it may be blocked on.

    Why wait: a thread still inside a torch call when the interpreter exits is killed there, and
    the C++ runtime aborts the process (SIGABRT) instead of exiting with the status we chose.
    """
    stop.set()
    deadline = time.monotonic() + ENCODER_STOP_SECONDS
    while worker.is_alive() and time.monotonic() < deadline:
        with suppress(queue.Empty):
            results.get(timeout=0.05)
    worker.join(timeout=max(0.0, deadline - time.monotonic()))


def run_live(
    stream: TranslationStream,
    source: Source,
    sink: Sink,
    buffer_ms: float | None = None,
    on_start: Callable[[], None] | None = None,
    threaded: bool = True,
) -> LiveReport:
    """Translate ``source`` into ``sink`` until the source ends; the sink is committed only
    then (an error or Ctrl-C leaves no output file behind). Both are closed in any case.
    ``threaded``: encode in a second thread while this one decodes. ``buffer_ms`` None:
    ``default_buffer_ms``."""
    buffer_ms = default_buffer_ms(stream) if buffer_ms is None else buffer_ms
    paced = isinstance(source, DeviceInput)
    meter = _Meter(stream, buffer_ms, paced)
    stop = threading.Event()
    encoded_blocks = _encoded(stream, source, stop, threaded)
    try:
        if on_start is not None:
            on_start()
        for encoded in encoded_blocks:
            first, started, cpu = stream.emitted, time.perf_counter(), time.thread_time()
            out = stream.decode(encoded.frames)
            meter.record(encoded, first, len(out), time.perf_counter() - started, time.thread_time() - cpu)
            sink.write(out)
        sink.commit()
    finally:
        encoded_blocks.close()  # now, not when collected: stops (and waits for) the encoder thread
        source.close()
        sink.close()
    device_underruns = sink.underruns if isinstance(sink, DeviceOutput) else 0
    return meter.report(stream, buffer_ms, threaded, device_underruns)


# --- files and pipes -------------------------------------------------------------------------


class FileSource:
    """A whole audio file (any format ``load_audio`` reads), handed out block by block."""

    def __init__(self, path: Path) -> None:
        self.audio, self.position = load_audio(path), 0

    def read(self) -> np.ndarray | None:
        if self.position >= len(self.audio):
            return None
        block = self.audio[self.position : self.position + READ_BLOCK]
        self.position += READ_BLOCK
        return block

    def close(self) -> None:
        pass


class WavPipeSource:
    """A PCM WAV stream (standard input): read as it comes, resampled to the model's rate."""

    def __init__(self, stream: BinaryIO, name: str = "stdin") -> None:
        self.name = name
        try:
            self.wav = wave.open(stream, "rb")  # noqa: SIM115 - closed in close()
        except (wave.Error, EOFError) as exc:
            raise LiveError(f"{name}: not a PCM WAV stream ({exc}); pipe in a WAV file") from None
        self.width, self.channels = self.wav.getsampwidth(), self.wav.getnchannels()
        if self.width not in (1, 2, 4):
            raise LiveError(f"{name}: {8 * self.width}-bit WAV; send 8, 16 or 32-bit PCM")
        rate = self.wav.getframerate()
        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1)
        self.frames = max(1, READ_BLOCK * rate // SAMPLE_RATE)
        self.ended = False

    def read(self) -> np.ndarray | None:
        if self.ended:
            return None
        try:
            data = self.wav.readframes(self.frames)
        except EOFError:
            data = b""
        usable = len(data) // (self.width * self.channels) * self.width * self.channels
        self.ended = usable == 0
        dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[self.width]
        samples = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32)
        if self.width == 1:
            samples -= 128
        samples /= float(2 ** (8 * self.width - 1))
        mono = samples.reshape(-1, self.channels).mean(axis=1)
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(mono, last=self.ended).astype(np.float32)
        return mono if not self.ended or len(mono) else None

    def close(self) -> None:
        self.wav.close()


class FileSink:
    """An output file, written atomically when the stream ends (``save_audio``)."""

    def __init__(self, path: Path, force: bool = False, comment: str | None = None) -> None:
        # what save_audio would refuse at the end, refused before anything runs
        if path.exists() and not force:
            raise LiveError(f"{path}: already exists; pass --force to overwrite")
        if not path.parent.is_dir():
            raise LiveError(f"{path.parent}: output folder does not exist; create it first")
        if path.suffix.lstrip(".").upper() not in sf.available_formats():
            raise LiveError(
                f"{path}: cannot write {path.suffix or 'a file without extension'}; use .wav or .flac"
            )
        self.path, self.force, self.comment, self.parts = path, force, comment, []

    def write(self, audio: np.ndarray) -> None:
        self.parts.append(audio)

    def commit(self) -> None:
        audio = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)
        save_audio(self.path, audio, force=self.force, comment=self.comment)

    def close(self) -> None:
        self.parts = []


class WavPipeSink:
    """16-bit WAV on a pipe (standard output), written as it is made: the header says "length
    unknown", as streaming WAV writers do."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        header = b"RIFF" + WAV_STREAM_SIZE.to_bytes(4, "little") + b"WAVEfmt "
        header += (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
        header += SAMPLE_RATE.to_bytes(4, "little") + (2 * SAMPLE_RATE).to_bytes(4, "little")
        header += (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
        self._send(header + b"data" + WAV_STREAM_SIZE.to_bytes(4, "little"))

    def _send(self, data: bytes) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            # nothing more can reach the reader; point stdout at /dev/null so that Python's
            # own flush at exit does not fail a second time
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise LiveError("output pipe closed by the reader; stopped") from None

    def write(self, audio: np.ndarray) -> None:
        if len(audio):
            pcm = np.clip(np.floor(audio * 32768.0), -32768, 32767)  # as libsndfile writes files
            self._send(pcm.astype("<i2").tobytes())

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


# --- devices ---------------------------------------------------------------------------------


def _sounddevice() -> Any:
    """The PortAudio binding, or a one-line error that says what to install or use instead."""
    try:
        import sounddevice
    except ImportError:
        raise LiveError(
            "audio devices need the sounddevice package (pip install sounddevice); "
            "or use --input FILE|- and --output FILE|-"
        ) from None
    except OSError:
        raise LiveError(
            "PortAudio library not found (Debian: apt-get install libportaudio2); "
            "or use --input FILE|- and --output FILE|-"
        ) from None
    return sounddevice


def _default_device(sd: Any, kind: str) -> dict:
    try:
        return sd.query_devices(kind=kind)
    except (sd.PortAudioError, ValueError):
        raise LiveError(f"no default audio {kind} device; use --{kind} FILE|- (WAV on a pipe)") from None


class DeviceInput:
    """The default input device, at its own rate, resampled to the model's."""

    def __init__(self) -> None:
        sd = _sounddevice()
        info = _default_device(sd, "input")
        rate = int(info["default_samplerate"])
        self.blocks: queue.Queue[np.ndarray] = queue.Queue()
        self.overflows = 0
        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1)

        def callback(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            self.blocks.put(indata[:, 0].copy())

        try:
            self.device = sd.InputStream(samplerate=rate, channels=1, dtype="float32", callback=callback)
            self.device.start()
        except sd.PortAudioError as exc:
            raise LiveError(f"input device {info['name']!r}: {exc}") from None

    def read(self) -> np.ndarray | None:
        try:
            block = self.blocks.get(timeout=DEVICE_TIMEOUT_SECONDS)
        except queue.Empty:
            raise LiveError("the input device stopped delivering audio (unplugged?)") from None
        return block if self.resampler is None else self.resampler.resample_chunk(block).astype(np.float32)

    def close(self) -> None:
        self.device.abort()
        self.device.close()


class DeviceOutput:
    """The default output device, fed from a buffer; an empty buffer when it must play is an
    underrun (counted, and played as silence)."""

    def __init__(self, buffer_ms: float, latency_samples: int) -> None:
        sd = _sounddevice()
        info = _default_device(sd, "output")
        rate = int(info["default_samplerate"])
        self.rate, self.underruns = rate, 0
        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(SAMPLE_RATE, rate, 1)
        # silence first, so the first translated sample plays when its latency is up
        prefill = round((latency_samples / SAMPLE_RATE + buffer_ms / 1000) * rate)
        self.buffer = np.zeros(prefill, dtype=np.float32)
        self.lock = threading.Lock()
        self.ended = False

        def callback(outdata: np.ndarray, frames: int, when: Any, status: Any) -> None:
            with self.lock:
                take = min(frames, len(self.buffer))
                outdata[:take, 0] = self.buffer[:take]
                outdata[take:, 0] = 0
                self.buffer = self.buffer[take:]
                if take < frames and not self.ended:
                    self.underruns += 1

        try:
            self.device = sd.OutputStream(samplerate=rate, channels=1, dtype="float32", callback=callback)
            self.device.start()
        except sd.PortAudioError as exc:
            raise LiveError(f"output device {info['name']!r}: {exc}") from None

    def write(self, audio: np.ndarray) -> None:
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(audio).astype(np.float32)
        with self.lock:
            self.buffer = np.concatenate([self.buffer, audio])
        while len(self.buffer) > 2 * self.rate and self.device.active:  # a file faster than real time
            time.sleep(0.05)

    def commit(self) -> None:
        with self.lock:
            self.ended = True
        while len(self.buffer) and self.device.active:  # play out what is left
            time.sleep(0.02)

    def close(self) -> None:
        self.device.abort()
        self.device.close()


def open_source(spec: str | None) -> Source:
    """``None``: the default input device; ``"-"``: a WAV on standard input; else a file."""
    if spec is None:
        return DeviceInput()
    if spec == "-":
        if sys.stdin.isatty():
            raise LiveError("--input -: standard input is a terminal; pipe a WAV stream in")
        return WavPipeSource(sys.stdin.buffer)
    return FileSource(Path(spec))


def open_sink(
    spec: str | None, stream: TranslationStream, buffer_ms: float, force: bool, comment: str
) -> Sink:
    """``None``: the default output device; ``"-"``: WAV on standard output; else a file."""
    if spec is None:
        return DeviceOutput(buffer_ms, stream.latency_samples)
    if spec == "-":
        return WavPipeSink(sys.stdout.buffer)
    return FileSink(Path(spec), force, comment)
