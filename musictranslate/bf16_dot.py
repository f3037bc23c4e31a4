"""The CPU's bfloat16 dot-product instruction (``vdpbf16ps``) inside numba code.

Why: the fused step (``fused.py``) is a chain of small matrix products per sample. Stored as
bfloat16 and widened to float32 in software, each weight costs a load, an integer op and a
float32 multiply-add; ``vdpbf16ps`` (AVX512_BF16: AMD Zen 4 on, Intel Cooper Lake and Sapphire
Rapids on) multiplies 32 bf16 pairs and accumulates them into 16 float32 lanes in one
instruction, about twice the arithmetic per cycle (``docs/speed-live.md`` has the rates). numba
has no vector types and its JIT cannot assemble inline assembly, so ``dot_block`` writes the
inner loop itself in LLVM IR around LLVM's intrinsic for the instruction.

A product then reads its input as bfloat16 too (``round_pairs``: round to nearest even, two to a
32-bit word, the layout of ``fused.pack_bfloat16``'s weights), so the step keeps
``speed.BF16_TOLERANCE`` like torch's bf16 matmuls, not the widening path's float32 inputs.

numba's on-disk cache of ``fused._steps`` is keyed by ``fused.py``'s source stamp alone: after
editing this module in a checkout, clear the cache (``musictranslate/__pycache__/*.nb*``) or the
old code runs on (an install stamps every file anew).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from .runtime import cpu_flags

LANES = 16
"""float32 lanes of one 512-bit accumulator: the output columns one instruction writes."""
BLOCK_COLUMNS = 4 * LANES
"""Output columns ``dot_block`` keeps in registers per row: four accumulators, enough
independent chains to hide the instruction's latency even for one row."""


def available() -> bool:
    """True where the CPU has the instruction (Linux's flag ``avx512_bf16``)."""
    return "avx512_bf16" in cpu_flags()


def round_pairs(x: np.ndarray, words: np.ndarray) -> None:
    """``words[b, k]`` = ``x[b, 2k]`` and ``x[b, 2k + 1]`` rounded to bfloat16 (nearest, ties to
    even), in the upper and lower half, as ``fused.pack_bfloat16`` pairs weight rows; an odd last
    input pairs with zero. Compiled by ``fused.compiled()`` (a loop numba vectorises)."""
    bits = x.view(np.uint32)
    n = x.shape[1]
    half, odd = np.uint32(0x7FFF), np.uint32(1)
    for b in range(x.shape[0]):
        for k in range(n // 2):
            high, low = bits[b, 2 * k], bits[b, 2 * k + 1]
            high = high + half + ((high >> np.uint32(16)) & odd)
            low = low + half + ((low >> np.uint32(16)) & odd)
            words[b, k] = (high & np.uint32(0xFFFF0000)) | (low >> np.uint32(16))
        if n % 2:
            last = bits[b, n - 1]
            words[b, n // 2] = (last + half + ((last >> np.uint32(16)) & odd)) & np.uint32(0xFFFF0000)


def round_interleaved(first: np.ndarray, second: np.ndarray, words: np.ndarray) -> None:
    """``words[b, k]`` = ``first[b, k]`` and ``second[b, k]`` rounded as ``round_pairs`` rounds,
    in the upper and lower half: the words of ``first`` and ``second`` interleaved, read where
    they lie instead of being copied side by side first (``fused._taps``)."""
    high_bits, low_bits = first.view(np.uint32), second.view(np.uint32)
    half, odd = np.uint32(0x7FFF), np.uint32(1)
    for b in range(first.shape[0]):
        for k in range(first.shape[1]):
            high, low = high_bits[b, k], low_bits[b, k]
            high = high + half + ((high >> np.uint32(16)) & odd)
            low = low + half + ((low >> np.uint32(16)) & odd)
            words[b, k] = (high & np.uint32(0xFFFF0000)) | (low >> np.uint32(16))


@cache
def _bfloat() -> object:
    """LLVM's ``bfloat`` type, which llvmlite's IR builder does not name: one instance, so the
    intrinsic's declaration (made once per module) matches every call's arguments."""
    from llvmlite import ir

    class BFloat(ir.Type):
        def _to_string(self) -> str:
            return "bfloat"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, BFloat)

        def __hash__(self) -> int:
            return hash("bfloat")

    return BFloat()


@cache
def dot_block(rows: int) -> Callable:
    """A numba intrinsic ``f(start, result, words, w, j)``: ``result[b, :BLOCK_COLUMNS] =
    start[b, :BLOCK_COLUMNS] + x[b] @ W[:, j : j + BLOCK_COLUMNS]`` for ``b < rows``, ``x`` as
    ``round_pairs`` words and ``W`` as ``fused.pack_bfloat16`` words, the rows' columns of each
    array contiguous. ``start`` may be ``result`` (``+=``); else the sum starts from a bias, a
    residual or the conditioning where it lies, with no copy. The accumulators stay in registers
    over all of ``words``' pairs; each weight vector loaded serves every row."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i32, i64 = ir.IntType(32), ir.IntType(64)
    floats, ints, bf16s = (
        ir.VectorType(ir.FloatType(), LANES),
        ir.VectorType(i32, LANES),
        ir.VectorType(_bfloat(), 2 * LANES),
    )
    blocks = BLOCK_COLUMNS // LANES

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202 - numba's protocol
        start, result, words, weights = (
            context.make_array(kind)(context, builder, value)
            for kind, value in zip(signature.args[:4], args[:4], strict=True)
        )
        column_bytes = builder.mul(args[4], ir.Constant(i64, 4))
        start_row, result_row, word_row = (
            cgutils.unpack_tuple(builder, array.strides)[0] for array in (start, result, words)
        )
        weight_row = cgutils.unpack_tuple(builder, weights.strides)[0]
        pairs = cgutils.unpack_tuple(builder, words.shape)[1]
        dot = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(floats, [floats, bf16s, bf16s]),
            "llvm.x86.avx512bf16.dpbf16ps.512",
        )

        def at(base: ir.Value, offset: ir.Value, kind: ir.Type) -> ir.Value:
            byte = builder.gep(builder.bitcast(base, ir.IntType(8).as_pointer()), [offset])
            return builder.bitcast(byte, kind.as_pointer())

        def const(value: int) -> ir.Constant:
            return ir.Constant(i64, value)

        def where(row_bytes: ir.Value, b: int, q: int) -> ir.Value:
            return builder.add(builder.mul(const(b), row_bytes), const(4 * LANES * q))

        initial = [
            [builder.load(at(start.data, where(start_row, b, q), floats), align=4) for q in range(blocks)]
            for b in range(rows)
        ]
        entry = builder.basic_block
        loop, done = builder.append_basic_block("pairs"), builder.append_basic_block("stored")
        builder.cbranch(builder.icmp_signed(">", pairs, const(0)), loop, done)

        builder.position_at_end(loop)
        k = builder.phi(i64)
        running = [[builder.phi(floats) for _ in range(blocks)] for _ in range(rows)]
        k.add_incoming(const(0), entry)
        for b in range(rows):
            for q in range(blocks):
                running[b][q].add_incoming(initial[b][q], entry)
        weight_at = builder.add(builder.mul(k, weight_row), column_bytes)
        weight = [
            builder.bitcast(
                builder.load(at(weights.data, builder.add(weight_at, const(4 * LANES * q)), ints), align=4),
                bf16s,
            )
            for q in range(blocks)
        ]
        summed = []
        for b in range(rows):
            word = builder.load(
                at(words.data, builder.add(builder.mul(const(b), word_row), builder.mul(k, const(4))), i32)
            )
            spread = builder.insert_element(ir.Constant(ints, ir.Undefined), word, ir.Constant(i32, 0))
            spread = builder.shuffle_vector(
                spread, ir.Constant(ints, ir.Undefined), ir.Constant(ints, [0] * LANES)
            )
            summed.append(
                [
                    builder.call(dot, [running[b][q], builder.bitcast(spread, bf16s), weight[q]])
                    for q in range(blocks)
                ]
            )
        following = builder.add(k, const(1))
        body = builder.basic_block
        k.add_incoming(following, body)
        for b in range(rows):
            for q in range(blocks):
                running[b][q].add_incoming(summed[b][q], body)
        builder.cbranch(builder.icmp_signed("<", following, pairs), loop, done)

        builder.position_at_end(done)
        final = [[builder.phi(floats) for _ in range(blocks)] for _ in range(rows)]  # phis come first
        for b in range(rows):
            for q in range(blocks):
                final[b][q].add_incoming(initial[b][q], entry)
                final[b][q].add_incoming(summed[b][q], body)
        for b in range(rows):
            for q in range(blocks):
                builder.store(final[b][q], at(result.data, where(result_row, b, q), floats), align=4)
        return context.get_dummy_value()

    def typer(typingctx, start, result, words, weights, column):  # noqa: ANN001, ANN202 - numba's protocol
        return types.void(start, result, words, weights, column), codegen

    return intrinsic(typer)
