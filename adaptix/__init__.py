"""adaptix: composable adaptive gradient transformations for JAX, built on Optax.

Every classic optimizer is a short :func:`chain` of primitives, each an
``optax.GradientTransformationExtraArgs``::

    adam = chain(trace(b1, ema=True),
                 scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
                 bias_correction(b1),
                 scale_by_learning_rate(lr))

The namespace is flat, as Optax's: optimizers, primitives, combinators, the
research tools (AdaBayes, full-matrix AdaGrad, diagnostics, batch-size
scaling rules) and the state types all live at ``adaptix.<name>``. The
research tools are first-class here (the project is about the theory of
adaptive methods as usable code), and a second namespace would give some
optimizers a longer import than others; ``__all__`` below groups every name
by its role.
"""

__version__ = "0.2.0"

# Optimizers: chains of the primitives below, with Optax's signatures.
from adaptix._alias import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    amsgrad,
    lion,
    nadam,
    nadamw,
    radam,
    rmsprop,
    rprop,
    sgd,
    sign_sgd,
    signum,
)

# Types and states.
from adaptix._base import CountedState, CountedTransformation, EmptyState, Transformation
from adaptix._batch_scaling import linear_scaling, scale_hyperparameters, sqrt_scaling
from adaptix._bayes import (
    ScaleByPosteriorVarianceFpState,
    ScaleByPosteriorVarianceState,
    adabayes,
    adabayes_fp,
    implied_weight_decay,
    scale_by_posterior_variance,
    scale_by_posterior_variance_fp,
)

# Combinators and interoperation with Optax.
from adaptix._combine import chain
from adaptix._convert import from_optax, to_optax

# Curvature from gradient differences, and vSGD (no learning rate to tune).
from adaptix._curvature import (
    ScaleBySecantCurvatureState,
    ScaleByVsgdState,
    scale_by_secant_curvature,
    scale_by_vsgd,
    vsgd,
)

# Research tools.
from adaptix._diagnostics import DiagnosticsState, diagnostics, read_diagnostics, read_diagnostics_history

# Primitives: first moments (averages of the input) and the bias correction of an EMA.
from adaptix._first_moment import (
    EmaState,
    FirstMomentState,
    LionMomentumState,
    NesterovEmaState,
    ParameterDifferenceMomentumState,
    TraceState,
    bias_correction,
    ema,
    lion_momentum,
    nesterov_ema,
    parameter_difference_momentum,
    trace,
)
from adaptix._fullmatrix import ScaleByFullMatrixRssState, full_matrix_adagrad, scale_by_full_matrix_rss
from adaptix._inject import Hyperparams, inject_hyperparams
from adaptix._packed import PackedState, packed

# Storage: moments in 8-bit codes by blocks.
from adaptix._quantized import Quantized, QuantizedArray, dequantize, quantized

# Primitives: stateless rescalings (learning rate, weight decay, signs).
from adaptix._scale import add_decayed_weights, clip_by_sign, scale, scale_by_learning_rate, scale_by_sign

# Primitives: second moments (the per-coordinate denominators).
from adaptix._second_moment import (
    ScaleByInfNormState,
    ScaleByMaxRmsState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByStddevState,
    scale_by_inf_norm,
    scale_by_max_rms,
    scale_by_rectified_rms,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from adaptix._shard import shard_state

# Primitives: step sizes learned from the run (AdaDelta, Rprop, AdaBayes's filter).
from adaptix._step_size import ScaleByRpropState, ScaleByUpdateRmsState, scale_by_rprop, scale_by_update_rms

__all__ = [
    # The optimizers: ``optimizer(learning_rate, ...)`` returns a chain of primitives.
    "sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "nadam", "nadamw", "adamax", "radam",
    "lion", "sign_sgd", "signum", "rprop", "full_matrix_adagrad", "adabayes", "adabayes_fp",
    # The primitives an optimizer is built from.
    "trace", "ema", "nesterov_ema", "lion_momentum", "parameter_difference_momentum", "bias_correction",
    "scale_by_rms", "scale_by_stddev", "scale_by_rss", "scale_by_max_rms", "scale_by_inf_norm",
    "scale_by_rectified_rms", "scale_by_full_matrix_rss", "scale_by_update_rms", "scale_by_rprop",
    "scale_by_posterior_variance", "scale_by_posterior_variance_fp",
    "scale", "scale_by_learning_rate", "add_decayed_weights", "scale_by_sign", "clip_by_sign",
    # Combinators and conversions.
    "chain", "packed", "inject_hyperparams", "from_optax", "to_optax", "shard_state",
    # Storage of moments: 8-bit codes by blocks, accepted as any mu_dtype / nu_dtype / accumulator_dtype.
    "quantized", "dequantize", "Quantized", "QuantizedArray",
    # Research tools: what the theory reasons with, as code.
    "diagnostics", "read_diagnostics", "read_diagnostics_history", "scale_hyperparameters", "sqrt_scaling",
    "linear_scaling", "implied_weight_decay",
    # The transformation types and every stage's state.
    "Transformation", "CountedTransformation", "CountedState", "EmptyState", "TraceState", "FirstMomentState",
    "EmaState", "NesterovEmaState", "LionMomentumState", "ParameterDifferenceMomentumState",
    "ScaleByRmsState", "ScaleByStddevState", "ScaleByRssState", "ScaleByMaxRmsState", "ScaleByInfNormState",
    "ScaleByFullMatrixRssState", "ScaleByUpdateRmsState", "ScaleByRpropState",
    "ScaleByPosteriorVarianceState", "ScaleByPosteriorVarianceFpState", "DiagnosticsState", "PackedState",
    "Hyperparams",
    # Curvature from gradient differences (LeCun's secant), and vSGD built on it.
    "vsgd", "scale_by_secant_curvature", "scale_by_vsgd", "ScaleBySecantCurvatureState", "ScaleByVsgdState",
]
