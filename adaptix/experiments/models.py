"""The models of Kingma & Ba (2015), section 6, in ``flax.nnx``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def half_mask(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A mask of independent Bernoulli(1/2) booleans, 32 per random ``uint32`` word.

    ``jax.random.bernoulli`` draws one 32-bit word per entry; each bit of a uniform random word
    is already a fair coin, so unpacking the words costs a 32nd of the random numbers. On a CPU
    the masks of IMDB's input dropout (128 x 10,000 per lane) were the bulk of a training step:
    7x faster this way (1.26 s -> 0.18 s for 30 lanes).
    """
    n = math.prod(shape)
    words = jax.random.bits(key, (-(-n // 32),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(-1)[:n].reshape(shape).astype(bool)


class Dropout(nnx.Dropout):
    """``nnx.Dropout``, with the mask of the paper's rate 0.5 drawn 32 coins per random word (:func:`half_mask`).

    Other rates, and broadcast dimensions, are ``nnx.Dropout``'s own. The masks differ from
    ``nnx.Dropout``'s for the same key (the same distribution).
    """

    def __call__(self, inputs, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
        deterministic = self.deterministic if deterministic is None else deterministic
        if self.rate != 0.5 or self.broadcast_dims or deterministic or rngs is not None or self.rngs is None:
            return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
        key = self.rngs[self.rng_collection]() if isinstance(self.rngs, nnx.Rngs) else self.rngs()
        return jnp.where(half_mask(key, inputs.shape), inputs * 2, jnp.zeros_like(inputs))


class LogisticRegression(nnx.Module):
    """Multiclass logistic regression, optionally with dropout noise on the inputs (section 6.1)."""

    def __init__(self, in_features: int, num_classes: int, *, input_dropout: float = 0.0, rngs: nnx.Rngs):
        self.dropout = Dropout(input_dropout, rngs=rngs)
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
        self.dropout = Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = self.dropout(nnx.relu(layer(x)))
        return self.out(x)

    def l2_weights(self) -> list[jax.Array]:
        return [layer.kernel[...] for layer in self.hidden] + [self.out.kernel[...]]


class CNN(nnx.Module):
    """c64-c64-c128-1000 (section 6.3): 5x5 convolutions, 3x3 max-pooling with stride 2, dropout.

    The paper applies dropout noise "to the input layer and fully connected layer" without giving
    the rates; ``input_dropout`` (default 0) and ``dropout`` (0.5, on the 1000 units) set them.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        channels: Sequence[int] = (64, 64, 128),
        dense: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        input_dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        sizes = [in_channels, *channels]
        self.input_dropout = Dropout(input_dropout, rngs=rngs)
        self.convs = nnx.List(
            [nnx.Conv(a, b, kernel_size=(5, 5), padding="SAME", rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        # 32 -> 16 -> 8 -> 4 after three SAME-padded 3x3/2 poolings
        self.dense = nnx.Linear(4 * 4 * channels[-1], dense, rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(dense, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.input_dropout(x)
        for conv in self.convs:
            x = nnx.max_pool(nnx.relu(conv(x)), window_shape=(3, 3), strides=(2, 2), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(nnx.relu(self.dense(x)))
        return self.out(x)

    def l2_weights(self) -> list[jax.Array]:
        return [self.dense.kernel[...], self.out.kernel[...]]


class VAE(nnx.Module):
    """Variational auto-encoder of Kingma & Welling (2014), as in section 6.4: one softplus hidden layer.

    Gaussian encoder ``q(z|x) = N(mu(x), diag(exp(logvar(x))))``, standard normal prior, Bernoulli
    decoder on the pixel intensities. Calling it with the inputs and a standard normal ``noise`` of
    shape ``(batch, latent)`` returns each example's negative ELBO in nats (reconstruction
    cross-entropy summed over pixels plus the KL divergence), one reparametrised sample.
    The paper uses ``hidden=500, latent=50``.
    """

    def __init__(self, in_features: int = 784, *, hidden: int = 500, latent: int = 50, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(in_features, hidden, rngs=rngs)
        self.mean = nnx.Linear(hidden, latent, rngs=rngs)
        self.log_variance = nnx.Linear(hidden, latent, rngs=rngs)
        self.decoder = nnx.Linear(latent, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, in_features, rngs=rngs)

    def __call__(self, x: jax.Array, noise: jax.Array) -> jax.Array:
        h = nnx.softplus(self.encoder(x))
        mean, log_variance = self.mean(h), self.log_variance(h)
        z = mean + jax.numpy.exp(0.5 * log_variance) * noise
        logits = self.out(nnx.softplus(self.decoder(z)))
        # -log p(x|z) for Bernoulli pixels with probabilities x in [0, 1]: softplus(l) - x l
        reconstruction = (nnx.softplus(logits) - x * logits).sum(-1)
        kl = 0.5 * (jax.numpy.exp(log_variance) + mean**2 - 1.0 - log_variance).sum(-1)
        return reconstruction + kl
