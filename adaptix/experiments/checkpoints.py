"""Epoch checkpoints of a training in progress, with Orbax: arrays, host-side state and the data order.

A run interrupted between two checkpoints resumes from the last one and, because everything that
decides the rest of the run is in it (the parameters and optimizer state, the dropout keys, the
NumPy generators of the minibatch order, the curves so far), goes on **bit for bit** as if it had
never stopped.

A checkpoint holds two items: ``arrays``, a pytree of arrays saved with
``orbax.checkpoint.StandardSave`` (typed PRNG keys, which Orbax does not store, as their key data),
and ``meta``, a JSON dict (the generators' states are in it, as NumPy's ``bit_generator.state``).
Only the latest checkpoint is kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _storable(tree):
    """``tree`` with every typed PRNG key array replaced by its ``key_data`` (uint32), NumPy scalars as 0-d arrays."""
    def storable(leaf):
        if _is_key(leaf):
            return jax.random.key_data(leaf)
        return np.asarray(leaf) if isinstance(leaf, np.generic) else leaf
    return jax.tree.map(storable, tree)


def _with_keys(restored, template):
    """Typed keys back where ``template`` has them (with its implementation), and its weak scalar types.

    A weakly typed scalar (such as a count that began as a Python number) must come back weak, or
    the jitted step would see a new input type: a retrace, and possibly other type promotions.
    """
    def back(data, like):
        if _is_key(like):
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
        if getattr(like, "weak_type", False) and np.ndim(like) == 0:
            weak = jnp.asarray(np.asarray(data).item())
            return weak if weak.dtype == like.dtype else data
        return data
    return jax.tree.map(back, restored, template)


def generator_states(rngs: list[np.random.Generator]) -> list[dict]:
    """The JSON-able states of NumPy generators (``bit_generator.state``)."""
    return [rng.bit_generator.state for rng in rngs]


def restore_generators(rngs: list[np.random.Generator], states: list[dict]) -> None:
    for rng, state in zip(rngs, states, strict=True):
        rng.bit_generator.state = state


class EpochCheckpoints:
    """The checkpoints of one training, every ``every`` epochs, in ``directory`` (only the latest is kept).

    ``save(epoch, arrays, meta)`` after ``epoch`` finished epochs; ``restore(template)`` returns
    ``(epoch, arrays, meta)`` of the latest checkpoint (``arrays`` shaped and typed as
    ``template``), or ``None`` when there is none.
    """

    def __init__(self, directory: Path, every: int | None):
        self.directory, self.every = Path(directory).resolve(), every
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self._manager

    def due(self, epoch: int) -> bool:
        """Whether a checkpoint is to be written after ``epoch`` finished epochs."""
        return self.every is not None and epoch % self.every == 0

    def save(self, epoch: int, arrays: Any, meta: dict) -> None:
        args = ocp.args.Composite(arrays=ocp.args.StandardSave(_storable(arrays)), meta=ocp.args.JsonSave(meta))
        self.manager.save(epoch, args=args, force=True)
        self.manager.wait_until_finished()

    def restore(self, template: Any) -> tuple[int, Any, dict] | None:
        if not self.directory.exists():
            return None
        epoch = self.manager.latest_step()
        if epoch is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _storable(template))
        restored = self.manager.restore(epoch, args=ocp.args.Composite(
            arrays=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return epoch, _with_keys(restored.arrays, template), restored.meta

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


class RunProgress:
    """What a run has finished so far, kept in ``out/checkpoints`` until the run is complete.

    ``progress.json`` maps keys (``"optimizer0/tuned"``, ``"optimizer1/record"``, ...) to JSON values
    at full precision (the curves are the float32 values as Python floats, not the rounded ones of
    ``results.json``), rewritten atomically after each :meth:`put`; :meth:`epochs` gives the
    :class:`EpochCheckpoints` of one training (``every=None``: finished parts only, no epoch
    checkpoints). :meth:`clear` removes it all once the run's results are written.
    """

    def __init__(self, out: Path, every: int | None):
        self.directory, self.every = Path(out) / "checkpoints", every
        path = self.directory / "progress.json"
        self._values: dict = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, default=None):
        return self._values.get(key, default)

    def put(self, key: str, value) -> None:
        self._values[key] = value
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "progress.json.tmp"
        tmp.write_text(json.dumps(self._values))
        tmp.replace(self.directory / "progress.json")

    def epochs(self, name: str) -> EpochCheckpoints | None:
        return EpochCheckpoints(self.directory / name, self.every) if self.every is not None else None

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
