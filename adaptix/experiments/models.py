"""The models of Kingma & Ba (2015), section 6, in ``flax.nnx``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx


class LogisticRegression(nnx.Module):
    """Multiclass logistic regression, optionally with dropout noise on the inputs (section 6.1)."""

    def __init__(self, in_features: int, num_classes: int, *, input_dropout: float = 0.0, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(input_dropout, rngs=rngs)
        self.linear = nnx.Linear(in_features, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(self.dropout(x))

    def l2_weights(self) -> list[jax.Array]:
        return [self.linear.kernel[...]]


class MLP(nnx.Module):
    """Fully connected ReLU network (section 6.2: two hidden layers of 1000 units)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (1000, 1000),
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        sizes = [in_features, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = self.dropout(nnx.relu(layer(x)))
        return self.out(x)

    def l2_weights(self) -> list[jax.Array]:
        return [layer.kernel[...] for layer in self.hidden] + [self.out.kernel[...]]


class CNN(nnx.Module):
    """c64-c64-c128-1000 (section 6.3): 5x5 convolutions, 3x3 max-pooling with stride 2, dropout."""

    def __init__(
        self,
        num_classes: int = 10,
        *,
        channels: Sequence[int] = (64, 64, 128),
        dense: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        rngs: nnx.Rngs,
    ):
        sizes = [in_channels, *channels]
        self.convs = nnx.List(
            [nnx.Conv(a, b, kernel_size=(5, 5), padding="SAME", rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        # 32 -> 16 -> 8 -> 4 after three SAME-padded 3x3/2 poolings
        self.dense = nnx.Linear(4 * 4 * channels[-1], dense, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(dense, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.max_pool(nnx.relu(conv(x)), window_shape=(3, 3), strides=(2, 2), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(nnx.relu(self.dense(x)))
        return self.out(x)

    def l2_weights(self) -> list[jax.Array]:
        return [self.dense.kernel[...], self.out.kernel[...]]
