r"""Quantized storage: a moment kept as 8-bit codes and one float32 scale per block.

:func:`quantized` returns a storage spec, accepted wherever a stage takes the dtype of a stored
moment (``mu_dtype``, ``nu_dtype``, ``accumulator_dtype``). A moment leaf of :math:`n \ge`
``min_size`` entries is stored as a :class:`QuantizedArray`: ``codes`` of the parameter's shape
(``int8`` for the signed code map of first moments, ``uint8`` for the unsigned map of second
moments) and ``scales``, the absolute maximum of each of its :math:`B = \lceil n / b \rceil`
blocks (float32), where :math:`b` is the ``block_size``. Entry :math:`i` of block :math:`k` stands
for

.. math::

    x_i \approx s_k\, q[c_i], \qquad s_k = \max_{j \in k} |x_j|, \qquad
    c_i = \operatorname{argmin}_c \bigl|\, q[c] - x_i / s_k \bigr|,

with :math:`q` a *dynamic* code map in the manner of Dettmers et al. (2022, section 2.2), written
here from its description: after the sign bit of the signed map, a code's bits read :math:`E`
zeros (the exponent), a one (the indicator bit) and :math:`F` fraction bits, linear over a decade:

.. math::

    q = 2^{-sE} \Bigl(2^{-s} + (1 - 2^{-s})\, \frac{k + 1}{2^F}\Bigr), \quad k = 0, \dots, 2^F - 1,
    \qquad \text{signed: } E + F = 6,\ 2^s = 8; \quad \text{unsigned: } E + F = 7,\ 2^s = 16,

plus 0. The paper's decades are powers of 10; here they are powers of 8 (signed) and 16 (unsigned,
for squares, whose range is the square of a first moment's), so that every code is a dyadic number,
exact in float32, and coding is bit arithmetic on the float (no table, no search: it fuses into
the update). Measured on block-wise Gaussian moments with log-normal scales, the update
:math:`m / \sqrt{v}` read from these maps is as close to float32 as with the paper's (mean relative
error 1.2 %, 1.9 %, 5.1 % for scales spread over 0.2, 0.4, 0.7 decades, against 1.2 %, 2.0 %, 6.4 %:
``benchmarks/RESULTS.md``). The signed map covers :math:`[2^{-18}, 1] \approx [3.8 \cdot 10^{-6}, 1]`
with 64 codes over :math:`(1/8, 1]` (spacing 1.4 % of the maximum), the unsigned one
:math:`[2^{-28}, 1] \approx [3.7 \cdot 10^{-9}, 1]` with 128 codes over :math:`(1/16, 1]` (spacing
0.73 %); the block's largest entry, at :math:`q = 1`, is stored exactly. The leaf describes itself:
the code dtype says which map, ``scales.shape`` the number of blocks :math:`B`, and the blocks are
:math:`B` consecutive runs of :math:`\lceil n / B \rceil` entries of the raveled leaf (the last one
shorter; exactly ``block_size`` entries when it divides :math:`n`). Nothing else is needed to read it.

Three choices of this module that the paper leaves open:

* **A positive second moment is never stored as 0.** An unsigned entry below the smallest code
  :math:`2^{-28} s_k` is stored as that code, not as 0: Adam's step :math:`m / (\sqrt{v} +
  \epsilon)` at a coordinate whose :math:`v` rounded to 0 would be :math:`m / \epsilon`. Rounding
  up only shrinks such a step.
* **A non-finite entry poisons its block.** Its scale is NaN, so the whole block reads as NaN
  (a float32 moment would be NaN at that coordinate only): never silently finite. Skip such
  steps with ``optax.apply_if_finite``, which keeps the codes untouched.
* **A block of zeros has the scale 0** and reads as exact zeros.

References:
  Dettmers, Lewis, Shleifer & Zettlemoyer, *8-bit Optimizers via Block-wise Quantization*,
  ICLR 2022, https://arxiv.org/abs/2110.02861; Dettmers, *8-Bit Approximations for Parallelism
  in Deep Learning*, ICLR 2016, https://arxiv.org/abs/1511.04561 (dynamic tree quantization).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptix import _validate as v

#: The dtype a quantized moment is read in (and updated in, or wider with wider gradients).
READ_DTYPE = jnp.dtype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Quantized:
    """A storage spec: moments stored in 8-bit codes by blocks (made by :func:`quantized`, which documents it).

    Frozen and hashable, holding Python scalars only, so that a transformation built with it
    holds no array (``flax.nnx.Optimizer`` keeps the transformation static). Checked when made.
    """

    bits: int = 8
    block_size: int = 256
    signed: bool | None = None
    min_size: int = 4096

    def __post_init__(self):
        owner = "quantized"
        v.check_int(owner, "bits", self.bits, 1)
        if self.bits != 8:
            raise ValueError(
                f"{owner}: bits must be 8, got {self.bits!r}: only 8-bit codes are offered. 4-bit codes of this map "
                "were measured and refused: Adam's update read from them is off by 19-50 % on average (8 bits: "
                "1.2-5 %) and a second moment wanders to 0.1-40 times float32's (benchmarks/RESULTS.md); 4-bit "
                "states need other maps and normalisations (Li, Chen & Zhu, 2023, https://arxiv.org/abs/2309.01507).")
        v.check_int(owner, "block_size", self.block_size, 1)
        if self.signed is not None:
            v.check_bool(owner, "signed", self.signed)
        v.check_int(owner, "min_size", self.min_size, 0)

    def resolved(self, signed: bool) -> Quantized:
        """The spec with ``signed`` decided (by the stage, where it was left ``None``)."""
        return self if self.signed is not None else dataclasses.replace(self, signed=signed)

    def applies_to(self, x: Any, real: bool = False) -> bool:
        """Whether a moment of the parameter ``x`` is quantized: a leaf of ``min_size`` entries or more, real
        or with a ``real`` moment (a second moment of complex parameters is real)."""
        complex_leaf = jnp.issubdtype(jnp.result_type(x), jnp.complexfloating)
        return (real or not complex_leaf) and max(self.min_size, 1) <= int(np.size(x))


def check_storage(owner: str, name: str, value: Any, *, signed: bool = False) -> None:
    """A moment's storage: ``None``, a floating dtype, or a :func:`quantized` spec.

    ``signed=True`` for a moment that takes both signs (a first moment): a spec with
    ``signed=False`` would store its negative entries as 0, and is refused.
    """
    if isinstance(value, Quantized):
        if signed and value.signed is False:
            raise ValueError(f"{owner}: {name} is quantized(signed=False), but this moment takes negative values, "
                             "which the unsigned map stores as 0; use signed=True or None.")
        return
    v.check_dtype(owner, name, value, also="adaptix.quantized(...)")


def quantized(bits: int = 8, block_size: int = 256, *, signed: bool | None = None,
              min_size: int = 4096) -> Quantized:
    r"""Stores a moment in 8-bit codes by blocks: about 1 byte per entry instead of 4.

    Pass it as a moment's storage dtype: ``adaptix.adam(lr, mu_dtype=adaptix.quantized(),
    nu_dtype=adaptix.quantized())`` keeps Adam's state in about 2.03 bytes per parameter (codes
    of 1 byte for :math:`m` and :math:`v`, one float32 scale per 256 entries each) instead of 8.
    Every stage that takes ``accumulator_dtype`` (or an alias's ``mu_dtype``/``nu_dtype``) accepts
    it. At each step the stored moment is read in float32 (:math:`\tilde m = s_k\, q[c]`), updated
    in float32 (or wider, with wider gradients), stored again (new scales, new codes) and **used as
    stored**: the update is computed from the moment read back from the new codes, so the state
    alone determines the step, as with a ``bfloat16`` moment. The code map and the layout are in
    the docstring of ``adaptix._quantized``: a non-linear *dynamic* map (Dettmers et
    al., 2022), precise for small and large values alike, and one absolute maximum per block, so
    that an outlier costs precision only within its block.

    Leaves of fewer than ``min_size`` entries (biases, norms: little memory, and bitsandbytes
    keeps them in 32 bits too) and empty leaves are stored unquantized, in float32; a first moment of
    complex parameters stays complex64 (its second moment, :math:`|g|^2`, is real and quantized). A
    quantized moment reads as float32, so updates of bfloat16 or float16 parameters are float32
    (Optax's dtype rule, as with ``mu_dtype=jnp.float32``). A parameter in an ``nnx.Param`` box keeps
    its box on the codes (``adaptix._quantized.lift_boxes``), so ``flax.nnx.Optimizer`` works.

    Where 8 bits hurt (``benchmarks/quantized_accuracy.py``, ``benchmarks/RESULTS.md``):

    * **Entries far below their block's maximum.** Half the spacing of the codes is 0.4 % (unsigned)
      / 0.7 % (signed) of an entry at the maximum, 3.7 % / 1.7 % at a tenth of it, 4.6 % / 4.3 % at a
      hundredth, 7 % / 27 % at :math:`10^{-4}`. The map ends at :math:`2^{-28} \approx 3.7 \cdot 10^{-9}`
      (unsigned) and :math:`2^{-18} \approx 3.8 \cdot 10^{-6}` (signed) of the maximum: a first moment
      below half of that is stored as 0 (its step is 0), a positive second moment is rounded up to it.
      With entries whose scales spread over 0.2, 0.4, 0.7 decades (s.d.) within a block, Adam's
      :math:`m/\sqrt{v}` read from the codes is off by 1.2 %, 1.9 %, 5.1 % on average.
    * **eps.** A second moment is never below :math:`2^{-28}` of its block's maximum :math:`s_k`, so
      Adam's denominator is at least :math:`2^{-14}\sqrt{s_k} + \epsilon`: where a float32 :math:`v`
      would be tiny and ``eps`` (1e-8) would set the step, the 8-bit step is smaller.
    * **Decays near 1.** One step moves an EMA by :math:`1-\beta` of the distance to its input,
      less than half a spacing for :math:`\beta_2 = 0.999`, so an entry moves only when its ratio to
      the block's maximum crosses the middle between two codes. The scale carries a uniform decay of
      the block exactly, and the maximum's moves redistribute the others, so on noisy gradients ``v``
      does not drift: after 3000 steps with :math:`\beta_2 = 0.999` and the gradients halved halfway,
      8-bit ``v`` is 0.99 times float32's (median) where bfloat16's stalls at 2.4 times; but each
      entry wanders, 0.47-1.76 times float32's (1st-99th percentile; :math:`\sqrt v` off by 9 % on
      average; 6.6 % with :math:`\beta_2 = 0.99`). On a smooth problem an entry can stay where it is
      while its input changes by a few times. Deterministic round-to-nearest cannot average this
      out; stochastic rounding would, at the price of the state no longer determining the step.

    On the digits MLP (7,510 parameters, 3 seeds) Adam with both moments in 8 bits trains as float32
    Adam does (``benchmarks/RESULTS.md``).

    Args:
      bits: bits per code; only 8. 4-bit codes of this map were measured and are refused: the update
        read from them is off by 19-50 % on average and a second moment wanders to 0.1-40 times
        float32's (``benchmarks/RESULTS.md``).
      block_size: entries per block, an int ``>= 1``: the smaller, the more precise and the more
        scales (4 bytes per block and moment: 256 adds 0.016 bytes per entry). The paper used
        2048; bitsandbytes' 8-bit optimizers use 256.
      signed: the signed map (a sign bit and 7 bits of magnitude) or the unsigned one (8 bits of
        magnitude); ``None`` lets each stage choose (signed for first moments, unsigned for
        second moments, sums of squares and maxima). A first moment refuses ``False``.
      min_size: leaves with fewer entries stay in float32 (bitsandbytes: 4096). ``0`` quantizes
        every leaf of at least one entry.

    Example:
      >>> import jax.numpy as jnp, numpy as np, adaptix
      >>> opt = adaptix.adam(1e-3, mu_dtype=adaptix.quantized(), nu_dtype=adaptix.quantized())
      >>> state = opt.init({"w": jnp.zeros((64, 64))})
      >>> nu = state.inner_state[1].nu["w"]
      >>> nu.codes.dtype, nu.codes.shape, nu.scales.shape  # 4096 one-byte codes, 16 scales
      (dtype('uint8'), (64, 64), (16,))

    References:
      Dettmers, Lewis, Shleifer & Zettlemoyer, *8-bit Optimizers via Block-wise Quantization*,
      ICLR 2022, https://arxiv.org/abs/2110.02861
    """
    return Quantized(bits, block_size, signed, min_size)


class QuantizedArray(NamedTuple):
    """A stored moment leaf: ``codes`` (int8: signed map, uint8: unsigned) of the parameter's shape,
    and ``scales``, each block's absolute maximum (float32, one per block).

    It reads as a float32 array of ``codes.shape`` (:func:`dequantize`); ``shape`` and ``dtype``
    say so, so that dtype rules treat it as the float32 moment it stands for.
    """

    codes: jax.Array
    scales: jax.Array

    @property
    def shape(self) -> tuple:
        return tuple(jnp.shape(self.codes))

    @property
    def dtype(self) -> jnp.dtype:
        return READ_DTYPE


def is_quantized(x: Any) -> bool:
    return isinstance(x, QuantizedArray)


def _layout(signed: bool) -> tuple[int, int]:
    """``(top, s)``: the fraction bits :math:`F` of the top decade, and a decade's width :math:`2^s`."""
    return (6, 3) if signed else (7, 4)


@functools.cache
def code_map(signed: bool) -> np.ndarray:
    r"""The map's values by magnitude index (float32, increasing, ``[0] = 0``, ``[-1] = 1``): 128 signed, 256 unsigned.

    Index :math:`i = 2^F + k` (:math:`0 \le k < 2^F`; the leading one is the indicator bit) has
    the exponent :math:`E = \text{top} - F` and the value
    :math:`2^{-sE} \bigl(2^{-s} + (1 - 2^{-s})(k + 1) / 2^F\bigr)`, a dyadic number exact in float32.
    """
    top, s = _layout(signed)
    index = np.arange(1, 2 ** (top + 1))
    fraction_bits = np.floor(np.log2(index))
    k = index - 2.0 ** fraction_bits
    base = 2.0 ** s
    values = base ** (fraction_bits - top) * (1 / base + (1 - 1 / base) * (k + 1) / 2.0 ** fraction_bits)
    return np.concatenate([[0.0], values]).astype(np.float32)


def _power_of_two(n: jax.Array) -> jax.Array:
    """:math:`2^n` in float32 for int32 ``n`` in ``[-126, 127]``, built from its bits (exact)."""
    return jax.lax.bitcast_convert_type((n + 127) << 23, jnp.float32)


def _exponent(x: jax.Array) -> jax.Array:
    r""":math:`\lfloor \log_2 x \rfloor` of a normal float32 ``x > 0`` (int32); -127 for 0 and subnormals."""
    return (jax.lax.bitcast_convert_type(x, jnp.int32) >> 23) - 127


def _magnitude_index(r: jax.Array, signed: bool) -> jax.Array:
    r"""The index of the code nearest to ``r`` in ``[0, 1]`` (int32).

    The decade :math:`E` (``r`` in :math:`(2^{-s(E+1)}, 2^{-sE}]`) comes from the exponent bits of
    ``r``. In it the codes are :math:`2^F` equal steps ending at :math:`2^{-sE}`, and one step
    below the first is the top code of the next decade, index :math:`2^F - 1`: so
    :math:`i = 2^F + \operatorname{round}(k)`, :math:`k \in [-1, 2^F - 1]`, is the nearest code
    across the decade's lower boundary too (a power of two on a boundary gets the same index from
    either side). The lowest decade holds one code, whose neighbour below is 0; the unsigned map
    rounds a positive ``r`` up to it.
    """
    top, s = _layout(signed)
    binades = jnp.clip(-_exponent(r) - 1, 0, s * (top + 1) - 1)  # whole binades below 1/2, at most 31
    decade = jnp.minimum((binades * -(-32 // s)) >> 5, top)  # binades // s for binades < 32 (s = 3 or 4)
    steps = _power_of_two(top - decade)
    y = r * _power_of_two(s * decade)  # in (2^-s, 1] but in the lowest decade, scaled exactly
    k = jnp.round((y * np.float32(2 ** s) - 1) * steps * np.float32(1 / (2 ** s - 1)) - 1)
    index = (steps + jnp.clip(k, -1, steps - 1)).astype(jnp.int32)
    lowest = (y >= np.float32(0.5)) if signed else (r > 0)
    return jnp.where(decade == top, lowest.astype(jnp.int32), index)


def _code_value(index: jax.Array, signed: bool) -> jax.Array:
    """The map's value at an int32 magnitude index, by bit arithmetic (equal to :func:`code_map`, exactly)."""
    top, s = _layout(signed)
    fraction_bits = jnp.maximum(_exponent(index.astype(jnp.float32)), 0)
    numerator = (2 ** s - 1) * (index + 1) - (2 ** s - 2) * (1 << fraction_bits)  # 2^F + (2^s - 1)(k + 1)
    value = numerator.astype(jnp.float32) * _power_of_two((s - 1) * fraction_bits - s * top - s)
    return jnp.where(index == 0, np.float32(0), value)


@functools.cache
def _signed_table() -> np.ndarray:
    magnitudes = code_map(True)
    codes = np.arange(-128, 128)
    return (np.sign(codes) * magnitudes[np.minimum(np.abs(codes), 127)]).astype(np.float32)


def _code_dtype(signed: bool) -> jnp.dtype:
    return jnp.dtype(jnp.int8 if signed else jnp.uint8)


def _is_signed(q: QuantizedArray) -> bool:
    return jnp.dtype(q.codes.dtype) == jnp.dtype(jnp.int8)


def _as_blocks(x: jax.Array, num_blocks: int) -> jax.Array:
    """The raveled leaf as ``(num_blocks, ceil(size / num_blocks))``, the last block padded with zeros."""
    flat = jnp.ravel(x)
    length = -(-flat.size // num_blocks)
    padding = num_blocks * length - flat.size
    if padding:
        flat = jnp.pad(flat, (0, padding))
    return flat.reshape(num_blocks, length)


def _per_entry(per_block: jax.Array, shape: tuple) -> jax.Array:
    """A value per block spread over the entries of a leaf of ``shape`` (the layout of :func:`_as_blocks`).

    The codes are then only ever read and written elementwise in the leaf's own shape, so XLA:CPU
    updates them in place (a reshape between the old and the new codes costs a copy).
    """
    size = int(np.prod(shape, dtype=np.int64))
    num_blocks = per_block.shape[0]
    length = -(-size // num_blocks)
    spread = jnp.broadcast_to(per_block[:, None], (num_blocks, length)).reshape(-1)
    return (spread[:size] if spread.size != size else spread).reshape(shape)


def quantize(x: jax.Array, num_blocks: int, signed: bool) -> QuantizedArray:
    """``x`` (non-empty) stored in ``num_blocks`` blocks with the signed or unsigned code map (nearest code).

    Unsigned: negative entries are stored as 0 and a positive entry is never stored as 0 (see the
    module's docstring). A block holding a NaN or an infinity gets the scale NaN.
    """
    x = jnp.asarray(x).astype(READ_DTYPE)
    magnitude = jnp.abs(x) if signed else jnp.maximum(x, 0)
    absmax = jnp.max(_as_blocks(magnitude, num_blocks), axis=1)
    finite = jnp.isfinite(absmax)
    inverse = jnp.where(finite & (absmax > 0), 1 / jnp.where(absmax > 0, absmax, 1), 0)
    ratio = jnp.minimum(magnitude * _per_entry(inverse, x.shape), 1)  # NaN only where the block is not finite
    index = _magnitude_index(jnp.where(jnp.isnan(ratio), 0, ratio), signed).astype(_code_dtype(signed))
    # The sign (signed) or the zero of a non-positive entry (unsigned) comes last, as a select: XLA:CPU
    # then keeps the codes in memory for the step that reads them, rather than recomputing them there
    # from the old codes, which they overwrite (that would need a copy of the old codes).
    codes = jnp.where(x < 0, -index, index) if signed else jnp.where(x > 0, index, jnp.zeros_like(index))
    scales = jnp.where(finite, absmax, np.float32(np.nan))
    return QuantizedArray(codes=codes, scales=scales)


def dequantize(tree: Any) -> Any:
    """The values a stored tree stands for: every :class:`QuantizedArray` in it read as float32.

    Takes a leaf or any tree (an optimizer state, say); other leaves are returned as they are.
    """
    return jax.tree.map(lambda x: _read(x) if is_quantized(x) else x, tree, is_leaf=is_quantized)


def _read(q: QuantizedArray, table: bool = False) -> jax.Array:
    signed = _is_signed(q)
    codes = q.codes.astype(jnp.int32)
    if table:
        lookup = jnp.asarray(_signed_table() if signed else code_map(False))
        values = lookup.at[codes + (128 if signed else 0)].get(mode="promise_in_bounds")
    else:
        values = _code_value(jnp.abs(codes), signed)
        if signed:
            values = jnp.where(codes < 0, -values, values)
    return values * _per_entry(q.scales, q.shape)


def requantize(x: jax.Array, like: QuantizedArray) -> QuantizedArray:
    """``x`` stored as ``like`` is: the same map and number of blocks."""
    return quantize(x, like.scales.shape[0], _is_signed(like))


def _is_box(x: Any) -> bool:
    """A ``flax.nnx.Variable`` (recognised by its methods: adaptix does not import flax)."""
    return callable(getattr(x, "get_metadata", None)) and callable(getattr(x, "get_raw_value", None))


def lift_boxes(tree: Any) -> Any:
    """The stored form: a box around a :class:`QuantizedArray` moves onto its codes, ``box(Q(c, s)) -> Q(box(c), s)``.

    A moment of a boxed parameter (an ``nnx.Param``, when the state is initialised from
    ``nnx.state(model)``) is made in the parameter's box. ``nnx.Optimizer`` keeps one array in each box
    (it would replace a box's ``QuantizedArray`` by an ``nnx.State`` after the first update) and
    unboxes the state for ``update``; in the stored form the codes keep the box (and its metadata:
    they are shaped like the parameter) and the scales are a plain array. :func:`lower_boxes` undoes it
    for a step that is handed boxed gradients too (``jax.grad`` of a function of ``nnx.state``).
    """

    def lift(x):
        children, box = jax.tree.flatten(x, is_leaf=is_quantized)
        if len(children) == 1 and is_quantized(children[0]):
            return children[0]._replace(codes=box.unflatten([children[0].codes]))
        return x

    return jax.tree.map(lambda x: lift(x) if _is_box(x) else x, tree, is_leaf=_is_box)


def lower_boxes(tree: Any) -> Any:
    """The computing form: ``Q(box(c), s) -> box(Q(c, s))``, so that the moment sits where a boxed gradient's
    array does (the inverse of :func:`lift_boxes`)."""

    def lower(q):
        if not _is_box(q.codes):
            return q
        (codes,), box = jax.tree.flatten(q.codes)
        return box.unflatten([q._replace(codes=codes)])

    return jax.tree.map(lambda x: lower(x) if is_quantized(x) else x, tree, is_leaf=is_quantized)


def quantized_full_like(x: Any, value: Any, spec: Quantized, sharded_full: Any) -> QuantizedArray:
    """A moment of the parameter ``x`` filled with ``value >= 0``, quantized per ``spec`` (``signed`` resolved).

    ``sharded_full(x, value, dtype)`` makes the codes, laid out like ``x``.
    """
    num_blocks = -(-int(np.size(x)) // spec.block_size)
    code = jnp.where(jnp.asarray(value) > 0, len(code_map(spec.signed)) - 1, 0)
    return QuantizedArray(codes=sharded_full(x, code, _code_dtype(spec.signed)),
                          scales=jnp.full((num_blocks,), value, READ_DTYPE))
