"""Fast autoregressive generation ("fast WaveNet") and seamless segmenting of long files.

Recomputing a WaveNet's whole receptive field per output sample is thousands of times too slow.
``FastDecoder`` keeps, for every layer, the layer's recent inputs in a ring buffer, so one step
costs one small matmul per layer. What makes the step fast on a CPU (measured, see docs/speed.md
and ``bench/``):

- plain ``addmm`` calls writing into preallocated buffers (``out=``), no modules, no allocations;
- the two taps of each dilated conv are one matmul: the ring holds ``dilation + 1`` slots plus a
  mirror of slot 0, so the current input and the one ``dilation`` steps back are adjacent in memory
  and one strided view of the ring is the matmul's input — nothing is copied or concatenated;
- each layer writes its residual output straight into the next layer's ring;
- the residual biases are folded into the rings' initial values and the conditioning bias, the
  conditioning is projected once per latent frame (every ``pool`` samples) with the tap biases
  folded in, and the skip outputs of all layers are summed by one matmul at the end;
- the gate uses one ``sigmoid`` over both halves (``tanh(u) = 2 sigmoid(2u) - 1``; torch's CPU
  sigmoid is several times faster than its tanh) and one ``addcmul``; the factor 2 and the sign
  are folded into the weights.

At the small batches of short files and live use, the same step runs as one compiled call per
latent frame instead (``fused.py``, the plan's ``engine``); ``FrameStepper`` drives either.

Long input is cut into segments generated side by side as one batch per worker (a forked process
on Linux, see ``workers.py``; ``speed.plan_generation`` picks how many, in which dtype). Each segment first
generates a warm-up (a receptive field) from the latent of the audio before it, then a crossfade
that overlaps the previous segment's last samples, so seams do not click. Every segment draws its
random numbers from its own seeded stream, so the output depends on the seed and the
segmentation, never on which segments shared a batch or a thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from . import pitch_guide
from .audio import mu_law_decode
from .fused import FusedDecoder
from .model import START_CLASS, Decoder
from .speed import DTypeLike, GenerationOptions, plan_generation, resolve_dtype
from .workers import run_workers, shared_counters

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with generated sample counts."""

CANCEL_CHECK = 64
"""Steps between checks of the stop flag: a failed or interrupted run ends within a second."""


CANDIDATE_STREAMS = 2**40
"""Candidate ``k`` of segment ``i`` draws from random stream ``i + k * CANDIDATE_STREAMS``."""


class GenerationCancelled(Exception):
    """Raised inside a worker when another worker failed or the caller was interrupted."""


class FoldedWeights:
    """A decoder's weights, rearranged and folded for the cached step, in one dtype (the torch
    step and the fused step in ``fused.py`` both read these)."""

    def __init__(self, decoder: Decoder, dtype: torch.dtype, device: str) -> None:
        cfg = decoder.cfg
        r = cfg.residual_channels

        def f(t: torch.Tensor) -> torch.Tensor:  # fold in float64, round once
            return t.detach().to(device="cpu", dtype=torch.float64)

        def w(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype).contiguous()

        n = len(decoder.dilations)
        # x_l = x'_l + c_l: the rings hold x' (the residual stream minus the residual biases
        # summed so far), so no residual bias is ever added; zero padding becomes -c_l.
        res_bias = [f(o.bias[:r]) for o in decoder.out]
        carried = [torch.zeros(r, dtype=torch.float64)]
        for b in res_bias[:-1]:
            carried.append(carried[-1] + b)
        # the first half of each gate goes through tanh(u) = 2 sigmoid(2u) - 1: scale it by 2
        scale = torch.cat([torch.full((r,), 2.0), torch.ones(r)]).double()
        cond_bias, self.taps = [], []
        for layer, conv in enumerate(decoder.dilated):
            past, now = f(conv.weight[:, :, 0]), f(conv.weight[:, :, 1])
            bias = f(decoder.condition.bias[2 * r * layer : 2 * r * (layer + 1)]) + f(conv.bias)
            cond_bias.append((bias + (past + now) @ carried[layer]) * scale)
            # the ring view reads [x[t], x[t - d]]
            self.taps.append(w((torch.cat([now, past], dim=1) * scale[:, None]).t()))
        self.ring_init = [w(-c) for c in carried]
        self.cond_weight = w((f(decoder.condition.weight[:, :, 0]) * scale.repeat(n)[:, None]).t())
        self.cond_bias = w(torch.cat(cond_bias))
        # the gate computes s2 - 2 s1 s2 = -tanh(a1) sigmoid(a2): the minus goes into the weights
        self.res_weight = [w(-f(o.weight[:r, :, 0]).t()) for o in decoder.out]
        self.skip_weight = w(-torch.cat([f(o.weight[r:, :, 0]) for o in decoder.out], dim=1).t())
        self.skip_bias = w(torch.stack([f(o.bias[r:]) for o in decoder.out]).sum(0))
        self.head1 = (w(f(decoder.head1.weight[:, :, 0]).t()), w(f(decoder.head1.bias)))
        self.head2 = (w(f(decoder.head2.weight[:, :, 0]).t()), w(f(decoder.head2.bias)))
        self.embed = w(f(decoder.embed.weight))


class _Layer(NamedTuple):
    """Everything one layer's step touches, unpacked as a plain tuple in the hot loop."""

    slots: int  # dilation + 1
    now: list[torch.Tensor]  # slot views (batch, r)
    pairs: list[torch.Tensor]  # [x[t], x[t - d]] views (batch, 2r), one per slot
    first: torch.Tensor  # slot 0 ...
    mirror: torch.Tensor  # ... and its copy after the last slot
    condition: torch.Tensor
    taps: torch.Tensor
    a: torch.Tensor
    filter_half: torch.Tensor  # a's first half: the tanh input, scaled by 2
    gate_half: torch.Tensor  # a's second half: the sigmoid input
    z: torch.Tensor  # this layer's gate output, a view into the skip matmul's input
    residual: torch.Tensor | None  # None for the last layer, whose residual output is unused
    next_slots: int
    next_now: list[torch.Tensor]


class DecoderState:
    """One batch's rings and scratch buffers: what a generation stream owns (one per worker)."""

    def __init__(
        self, weights: FoldedWeights, dilations: Sequence[int], batch: int, dtype: torch.dtype, device: str
    ):
        r = weights.embed.shape[1]
        n = len(dilations)
        self.weights, self.batch = weights, batch

        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(*shape, dtype=dtype, device=device)

        self.condition = empty(batch, n * 2 * r)
        self.gates = empty(batch, n * r)  # every layer's gate output, for the one skip matmul
        self.embedded = empty(batch, r)
        self.skip, self.hidden = (
            empty(batch, weights.skip_bias.shape[0]),
            empty(batch, weights.head1[1].shape[0]),
        )
        self.logits = empty(batch, weights.head2[1].shape[0])
        rings = []
        self.rings: list[torch.Tensor] = []  # each layer's whole ring, rows first (``reorder``)
        for d, init in zip(dilations, weights.ring_init, strict=True):
            # slots 0..d hold x[t] at t % (d + 1); slot d + 1 mirrors slot 0, so the view of
            # 2r values starting at x[t]'s slot is [x[t], x[t - d]] for every t
            ring = init.expand(batch, d + 2, r).clone()
            self.rings.append(ring)
            stride, base = ((d + 2) * r, 1), ring.storage_offset()
            pairs = [ring.as_strided((batch, 2 * r), stride, base + i * r) for i in range(d + 1)]
            rings.append(([ring[:, i] for i in range(d + 1)], pairs, ring[:, 0], ring[:, d + 1]))
        self.input_slots = rings[0][0]
        self.layers: list[_Layer] = []
        for i, (now, pairs, first, mirror) in enumerate(rings):
            a = empty(batch, 2 * r)
            last = i + 1 == n
            self.layers.append(
                _Layer(
                    slots=len(now),
                    now=now,
                    pairs=pairs,
                    first=first,
                    mirror=mirror,
                    condition=self.condition[:, 2 * r * i : 2 * r * (i + 1)],
                    taps=weights.taps[i],
                    a=a,
                    filter_half=a[:, :r],
                    gate_half=a[:, r:],
                    z=self.gates[:, r * i : r * (i + 1)],
                    residual=None if last else weights.res_weight[i],
                    next_slots=1 if last else len(rings[i + 1][0]),
                    next_now=now if last else rings[i + 1][0],
                )
            )

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` takes row ``rows[i]``'s history: every layer's ring."""
        for ring in self.rings:
            ring.copy_(ring[rows])


class FastDecoder:
    """A decoder's weights rearranged for cached, one-sample-at-a-time generation.

    ``dtype`` is the default for ``step``/``sample``/``teacher_forced_logits``; ``generate`` may
    pick another (the weights are converted once per dtype and kept).
    """

    def __init__(self, decoder: Decoder, dtype: DTypeLike | None = torch.float32, device: str = "cpu"):
        self.decoder, self.cfg, self.device = decoder, decoder.cfg, device
        self.dtype = resolve_dtype(dtype)
        self.dilations = list(decoder.dilations)
        self._weights: dict[torch.dtype, FoldedWeights] = {}
        self._fused: dict[torch.dtype, FusedDecoder] = {}
        self._lock = threading.Lock()

    def weights(self, dtype: torch.dtype | None = None) -> FoldedWeights:
        dtype = dtype or self.dtype
        with self._lock:
            if dtype not in self._weights:
                self._weights[dtype] = FoldedWeights(self.decoder, dtype, self.device)
            return self._weights[dtype]

    def fused(self, dtype: torch.dtype = torch.float32) -> FusedDecoder:
        """The float32 weights laid out for the fused step, its matrices stored in ``dtype``
        (built, and its code loaded, once per dtype)."""
        weights = self.weights(torch.float32)
        with self._lock:
            if dtype not in self._fused:
                self._fused[dtype] = FusedDecoder(weights, self.dilations, self.cfg, dtype)
            return self._fused[dtype]

    def new_state(self, batch: int, dtype: torch.dtype | None = None) -> DecoderState:
        """Rings for ``batch`` streams, holding what the causal conv's zero padding holds."""
        dtype = dtype or self.dtype
        return DecoderState(self.weights(dtype), self.dilations, batch, dtype, self.device)

    def project_condition(self, state: DecoderState, frame: torch.Tensor) -> None:
        """One latent frame ``(batch, latent_dim)`` -> every layer's conditioning, in ``state``."""
        w = state.weights
        torch.addmm(w.cond_bias, frame.to(w.cond_weight.dtype), w.cond_weight, out=state.condition)

    def step(self, state: DecoderState, t: int, previous: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)`` for sample ``t`` given sample ``t - 1`` (classes).

        The result is a buffer of ``state``, overwritten by the next step.
        """
        w = state.weights
        torch.index_select(w.embed, 0, previous, out=state.embedded)
        state.input_slots[t % (self.dilations[0] + 1)].copy_(state.embedded)
        for slots, now, pairs, first, mirror, cond, taps, a, s1, s2, z, res, n_slots, n_now in state.layers:
            slot = t % slots
            if slot == 0:
                mirror.copy_(first)
            torch.addmm(cond, pairs[slot], taps, out=a)
            a.sigmoid_()
            torch.addcmul(s2, s1, s2, value=-2.0, out=z)  # -tanh(a1) sigmoid(a2)
            if res is not None:
                torch.addmm(now[slot], z, res, out=n_now[t % n_slots])
        torch.addmm(w.skip_bias, state.gates, w.skip_weight, out=state.skip).relu_()
        torch.addmm(w.head1[1], state.skip, w.head1[0], out=state.hidden).relu_()
        return torch.addmm(w.head2[1], state.hidden, w.head2[0], out=state.logits)

    @torch.inference_mode()
    def teacher_forced_logits(self, target: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes, time)`` stepping through ``target``: checks the cache."""
        batch, length = target.shape
        state = self.new_state(batch)
        previous = torch.full((batch,), START_CLASS, dtype=torch.long, device=self.device)
        out = []
        for t in range(length):
            if t % self.cfg.pool == 0:
                self.project_condition(state, latent[:, :, t // self.cfg.pool])
            out.append(self.step(state, t, previous).to(torch.float32, copy=True))
            previous = target[:, t]
        return torch.stack(out, dim=2)

    @torch.inference_mode()
    def sample(
        self,
        latent: torch.Tensor,
        length: int,
        sampler: Sampler,
        phase: int = 0,
        dtype: torch.dtype | None = None,
        on_frame: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        engine: str = "torch",
        guidance: Guidance | None = None,
    ) -> torch.Tensor:
        """Generate ``length`` samples (classes ``(batch, length)``, uint8) from ``latent``.

        Sample 0 lies ``phase`` samples into frame 0 of ``latent (batch, latent_dim, frames)``.
        ``on_frame(t)`` is called at every frame start (progress); setting ``stop`` makes the
        loop raise ``GenerationCancelled`` within ``CANCEL_CHECK`` steps (the fused step: within
        a frame). ``engine="fused"`` runs each frame's steps in one compiled call (its matrices
        in ``dtype``, the rest float32); its ``sampler`` must be a ``Sampler``. With ``guidance``
        each row is drawn as ``guidance.candidates`` rows of the sampler (``pitch_guide.py``).
        """
        pool = self.cfg.pool
        batch = latent.shape[0]
        candidates = 1 if guidance is None else guidance.candidates
        stepper = FrameStepper(self, batch * candidates, sampler, dtype, engine)
        latent = latent.to(device=self.device).repeat_interleave(candidates, dim=0)
        out = torch.empty(batch, length, dtype=torch.uint8, device=self.device)
        t = 0
        while t < length:
            frame = (t + phase) // pool
            count = min(length, (frame + 1) * pool - phase) - t  # the steps left in this frame
            if on_frame is not None:
                on_frame(t)
            if guidance is None:
                out[:, t : t + count] = stepper.run(latent[:, :, frame], count, stop)
            else:
                for start in range(t, t + count, pitch_guide.CHUNK):
                    steps = min(pitch_guide.CHUNK, t + count - start)
                    drawn = stepper.run(latent[:, :, frame], steps, stop)
                    chosen = guidance.choose(out[:, :start], drawn)
                    stepper.reorder(np.repeat(chosen, candidates))
                    out[:, start : start + steps] = drawn[chosen]
            t += count
        return out


class Guidance:
    """What pitch-guided sampling needs of one batch: the input's pitch track, the candidates
    drawn per row and where each row's sample 0 lies in the input."""

    def __init__(self, guide: pitch_guide.PitchGuide, candidates: int, starts: Sequence[int]) -> None:
        self.guide, self.candidates, self.starts = guide, candidates, list(starts)

    def choose(self, generated: torch.Tensor, drawn: torch.Tensor) -> np.ndarray:
        """For each row of ``generated`` (its classes so far), the row of ``drawn`` (all rows'
        candidates, ``candidates`` per row in order) it goes on from."""
        done, steps, k = generated.shape[1], drawn.shape[1], self.candidates
        past = mu_law_decode(generated[:, -pitch_guide.HISTORY :].cpu().numpy())
        options = mu_law_decode(drawn.cpu().numpy())
        chosen = np.empty(len(self.starts), dtype=np.int64)
        for row, start in enumerate(self.starts):
            period = self.guide.period(start + done, steps)
            chosen[row] = row * k + pitch_guide.choose(past[row], options[row * k : (row + 1) * k], period)
        return chosen


class FrameStepper:
    """The decoder state of ``batch`` streams, stepped a latent frame at a time on either step.

    What ``FastDecoder.sample`` runs per frame, and what a live stream keeps between calls: the
    rings, the last sample of each row, the step count and the sampler's position.
    """

    def __init__(
        self,
        fast: FastDecoder,
        batch: int,
        sampler: Sampler,
        dtype: torch.dtype | None = None,
        engine: str = "torch",
    ) -> None:
        self.fast, self.sampler, self.batch, self.t = fast, sampler, batch, 0
        self.fused = fast.fused(dtype or fast.dtype) if engine == "fused" else None
        self.state = self.fused.new_state(batch) if self.fused is not None else fast.new_state(batch, dtype)
        self.previous = torch.full((batch,), START_CLASS, dtype=torch.long, device=fast.device)

    @torch.inference_mode()
    def run(self, frame: torch.Tensor, count: int, stop: threading.Event | None = None) -> torch.Tensor:
        """``count`` samples ``(batch, count)`` uint8 conditioned on one latent frame
        ``(batch, latent_dim)``; ``stop`` set raises ``GenerationCancelled``."""
        fast, sampler, t = self.fast, self.sampler, self.t
        if self.fused is not None:
            if stop is not None and stop.is_set():
                raise GenerationCancelled
            self.fused.project_condition(self.state, frame)
            uniforms = sampler.draw(count, self.batch)
            classes = torch.from_numpy(
                self.fused.run(self.state, count, uniforms, sampler.temperature, sampler.min_p)
            )
        else:
            fast.project_condition(self.state, frame)
            classes = torch.empty(count, self.batch, dtype=torch.uint8, device=fast.device)
            for step in range(count):
                if stop is not None and (t + step) % CANCEL_CHECK == 0 and stop.is_set():
                    raise GenerationCancelled
                self.previous = sampler(fast.step(self.state, t + step, self.previous))
                classes[step] = self.previous
            classes = classes.t()
        self.t += count
        return classes

    def reorder(self, rows: np.ndarray) -> None:
        """Row ``i`` goes on from what row ``rows[i]`` has generated (its state and last sample);
        the sampler's streams stay with their rows."""
        if self.fused is not None:
            self.state.reorder(rows)
        else:
            index = torch.from_numpy(np.asarray(rows)).to(self.previous.device)
            self.state.reorder(index)
            self.previous = self.previous[index]


class Sampler:
    """Argmax (temperature 0) or sampling by inverse CDF, one seeded random stream per batch row.

    ``min_p`` truncates the tempered distribution to the classes at least that share of the most
    likely one's probability (min-p sampling): the rare far-off draws it removes are heard as hiss.

    Row ``i`` draws from stream ``streams[i]`` (default ``i``) of ``seed``, so a segment's
    output does not depend on which other segments share its batch. Uniforms are drawn in blocks
    of ``block`` steps, so the per-row generators cost nothing per step.
    """

    def __init__(
        self,
        temperature: float,
        seed: int,
        device: str = "cpu",
        streams: Sequence[int] | None = None,
        block: int = 1024,
        min_p: float = 0.0,
    ) -> None:
        self.temperature, self.seed, self.device, self.block = temperature, seed, device, block
        self.min_p = min_p
        self.streams = list(streams) if streams is not None else None
        self.generators: list[torch.Generator] = []
        self.uniforms = torch.empty(0)
        self.position = block

    def _refill(self, batch: int) -> None:
        if not self.generators:
            streams = self.streams if self.streams is not None else list(range(batch))
            for stream in streams:
                state = np.random.SeedSequence([self.seed % 2**63, stream]).generate_state(2, np.uint32)
                generator = torch.Generator(device=self.device)
                generator.manual_seed(int(state[0]) << 32 | int(state[1]))
                self.generators.append(generator)
        if len(self.generators) != batch:
            raise ValueError(f"sampler has {len(self.generators)} streams, logits have {batch} rows")
        draws = [torch.rand(self.block, generator=g, device=self.device) for g in self.generators]
        self.uniforms = torch.stack(draws, dim=1)
        self.position = 0

    def draw(self, steps: int, batch: int) -> np.ndarray | None:
        """The uniforms the next ``steps`` calls would use, ``(steps, batch)`` float32, consumed
        from the same streams (None at temperature 0): the fused step samples with them."""
        if self.temperature <= 0:
            return None
        parts = []
        while steps > 0:
            if self.position == self.block:
                self._refill(batch)
            take = min(steps, self.block - self.position)
            parts.append(self.uniforms[self.position : self.position + take])
            self.position += take
            steps -= take
        return torch.cat(parts).numpy() if parts else np.zeros((0, batch), dtype=np.float32)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature <= 0:
            return logits.argmax(dim=1)
        if self.position == self.block:
            self._refill(logits.shape[0])
        u = self.uniforms[self.position]
        self.position += 1
        probs = torch.softmax(logits.float() / self.temperature, dim=1)
        if self.min_p > 0:
            probs[probs < self.min_p * probs.amax(dim=1, keepdim=True)] = 0
        cdf = probs.cumsum_(dim=1)
        # right=True never picks a class of zero probability; the clamp catches u * total
        # rounding up to the total
        picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
        return picked.clamp_(max=logits.shape[1] - 1)


def _crossfade_window(length: int, fade: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Raised-cosine fades that sum to one across a seam."""
    window = np.ones(length, dtype=np.float32)
    if fade == 0:
        return window
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
    if fade_in:
        window[:fade] = ramp
    if fade_out:
        window[length - fade :] = ramp[::-1]
    return window


def generate(
    fast: FastDecoder,
    latent: torch.Tensor,
    length: int,
    options: GenerationOptions,
    progress: Progress | None = None,
    guide: pitch_guide.PitchGuide | None = None,
) -> np.ndarray:
    """Decode one file's latent ``(latent_dim, frames)`` to ``length`` float samples.

    With ``guide`` (the input's pitch) and ``options.follow_pitch`` above 1, every segment is
    drawn as that many candidates, kept in tune with the guide (``pitch_guide.py``).

    The frames are cut into ``plan.segments`` equal segments, generated side by side in one
    batch per worker. Segment ``i`` covers samples ``[i S, (i + 1) S)``; it starts
    generating ``warmup + crossfade`` samples earlier, conditioned on the latent there, discards
    the warm-up and fades in over the next ``crossfade`` samples while segment ``i - 1`` fades
    out. Memory holds the workers' decoder state and the output, whatever the file's length.
    """
    cfg = fast.cfg
    pool, frames = cfg.pool, latent.shape[1]
    candidates = options.follow_pitch if guide is not None and options.pitch_guided else 1
    plan = plan_generation(cfg, frames, options, candidates=candidates)
    span = plan.segment_frames * pool
    warmup, fade = plan.warmup, plan.crossfade
    steps = warmup + fade + span
    first_frame, phase = divmod(-(warmup + fade), pool)  # where a segment's first step lies
    frame_offsets = torch.arange(first_frame, first_frame + math.ceil((phase + steps) / pool))
    out = np.zeros(plan.segments * span, dtype=np.float32)
    total = plan.segments * steps
    done = shared_counters(len(plan.batches))  # samples generated per batch, by its worker
    stop = threading.Event()
    if plan.engine == "fused":  # converted (and compiled) once, before workers fork and share it
        fast.fused(plan.dtype)
    else:
        fast.weights(plan.dtype)

    def report() -> None:
        if progress is not None:
            progress(int(done.sum()), total)

    def run(job: int) -> np.ndarray:
        ids = plan.batches[job]
        frame_ids = torch.tensor(ids)[:, None] * plan.segment_frames + frame_offsets[None, :]
        batch_latent = latent[:, frame_ids.clamp(0, frames - 1)].permute(1, 0, 2)
        guidance = None
        streams = ids
        if candidates > 1:
            guidance = Guidance(guide, candidates, [i * span - warmup - fade for i in ids])
            # candidate 0 draws the segment's own stream, so unguided stretches are plain sampling
            streams = [i + k * CANDIDATE_STREAMS for i in ids for k in range(candidates)]
        sampler = Sampler(
            options.temperature, options.seed, options.device, streams=streams, min_p=options.min_p
        )

        def on_frame(t: int) -> None:
            done[job] = t * len(ids)
            if plan.workers == 1:  # else the calling thread reports
                report()

        classes = fast.sample(
            batch_latent, steps, sampler, phase, plan.dtype, on_frame, stop, plan.engine, guidance
        )
        done[job] = steps * len(ids)
        return classes[:, warmup:].cpu().numpy()

    results = run_workers(run, len(plan.batches), plan.workers, stop, report)
    for ids, classes in zip(plan.batches, results, strict=True):
        for row, i in enumerate(ids):  # one segment at a time: no float copy of the whole batch
            window = _crossfade_window(span + fade, fade, i > 0, i < plan.segments - 1)
            start = i * span - fade
            skip = max(0, -start)
            out[start + skip : start + span + fade] += mu_law_decode(classes[row, skip:]) * window[skip:]
    report()
    return out[:length]
