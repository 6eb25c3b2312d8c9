"""adaptix: composable adaptive gradient transformations for JAX, built on Optax.

Every classic optimizer is a short :func:`chain` of primitives, each an
``optax.GradientTransformationExtraArgs``::

    adam = chain(trace(b1, ema=True),
                 scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
                 bias_correction(b1),
                 scale_by_learning_rate(lr))
"""

__version__ = "0.2.0"

from adaptix._alias import adadelta as adadelta
from adaptix._alias import adagrad as adagrad
from adaptix._alias import adam as adam
from adaptix._alias import adamax as adamax
from adaptix._alias import adamw as adamw
from adaptix._alias import amsgrad as amsgrad
from adaptix._alias import lion as lion
from adaptix._alias import nadam as nadam
from adaptix._alias import nadamw as nadamw
from adaptix._alias import radam as radam
from adaptix._alias import rmsprop as rmsprop
from adaptix._alias import rprop as rprop
from adaptix._alias import sgd as sgd
from adaptix._alias import sign_sgd as sign_sgd
from adaptix._alias import signum as signum
from adaptix._base import CountedState as CountedState
from adaptix._base import CountedTransformation as CountedTransformation
from adaptix._base import EmptyState as EmptyState
from adaptix._base import Transformation as Transformation
from adaptix._bayes import ScaleByPosteriorVarianceFpState as ScaleByPosteriorVarianceFpState
from adaptix._bayes import ScaleByPosteriorVarianceState as ScaleByPosteriorVarianceState
from adaptix._bayes import adabayes as adabayes
from adaptix._bayes import adabayes_fp as adabayes_fp
from adaptix._bayes import implied_weight_decay as implied_weight_decay
from adaptix._bayes import scale_by_posterior_variance as scale_by_posterior_variance
from adaptix._bayes import scale_by_posterior_variance_fp as scale_by_posterior_variance_fp
from adaptix._combine import chain as chain
from adaptix._convert import from_optax as from_optax
from adaptix._convert import to_optax as to_optax
from adaptix._correction import bias_correction as bias_correction
from adaptix._delta import ScaleByRpropState as ScaleByRpropState
from adaptix._delta import ScaleByUpdateRmsState as ScaleByUpdateRmsState
from adaptix._delta import scale_by_rprop as scale_by_rprop
from adaptix._delta import scale_by_update_rms as scale_by_update_rms
from adaptix._diagnostics import DiagnosticsState as DiagnosticsState
from adaptix._diagnostics import diagnostics as diagnostics
from adaptix._diagnostics import read_diagnostics as read_diagnostics
from adaptix._diagnostics import read_diagnostics_history as read_diagnostics_history
from adaptix._fullmatrix import ScaleByFullMatrixRssState as ScaleByFullMatrixRssState
from adaptix._fullmatrix import full_matrix_adagrad as full_matrix_adagrad
from adaptix._fullmatrix import scale_by_full_matrix_rss as scale_by_full_matrix_rss
from adaptix._momentum import EmaState as EmaState
from adaptix._momentum import FirstMomentState as FirstMomentState
from adaptix._momentum import LionMomentumState as LionMomentumState
from adaptix._momentum import NesterovEmaState as NesterovEmaState
from adaptix._momentum import ParameterDifferenceMomentumState as ParameterDifferenceMomentumState
from adaptix._momentum import TraceState as TraceState
from adaptix._momentum import ema as ema
from adaptix._momentum import lion_momentum as lion_momentum
from adaptix._momentum import nesterov_ema as nesterov_ema
from adaptix._momentum import parameter_difference_momentum as parameter_difference_momentum
from adaptix._momentum import trace as trace
from adaptix._moments import ScaleByInfNormState as ScaleByInfNormState
from adaptix._moments import ScaleByMaxRmsState as ScaleByMaxRmsState
from adaptix._moments import ScaleByRmsState as ScaleByRmsState
from adaptix._moments import ScaleByRssState as ScaleByRssState
from adaptix._moments import ScaleByStddevState as ScaleByStddevState
from adaptix._moments import scale_by_inf_norm as scale_by_inf_norm
from adaptix._moments import scale_by_max_rms as scale_by_max_rms
from adaptix._moments import scale_by_rectified_rms as scale_by_rectified_rms
from adaptix._moments import scale_by_rms as scale_by_rms
from adaptix._moments import scale_by_rss as scale_by_rss
from adaptix._moments import scale_by_stddev as scale_by_stddev
from adaptix._packed import PackedState as PackedState
from adaptix._packed import packed as packed
from adaptix._scale import add_decayed_weights as add_decayed_weights
from adaptix._scale import clip_by_sign as clip_by_sign
from adaptix._scale import scale as scale
from adaptix._scale import scale_by_learning_rate as scale_by_learning_rate
from adaptix._scale import scale_by_sign as scale_by_sign
from adaptix._scaling import linear_scaling as linear_scaling
from adaptix._scaling import scale_hyperparameters as scale_hyperparameters
from adaptix._scaling import sqrt_scaling as sqrt_scaling
