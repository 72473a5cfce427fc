"""Optimizers as plain ``torch.optim.Optimizer`` subclasses, and the curvature estimators they share.

Usable without the harness: ``from optimizers import AdaHessian``. Never imports ``bench``.
"""

from optimizers.adahessian import AdaHessian
from optimizers.agd import AGD
from optimizers.hutchinson import HutchinsonEstimator, smooth_
from optimizers.kfac import KFAC
from optimizers.mfac import MFAC
from optimizers.oasis import OASIS
from optimizers.shampoo import Shampoo
from optimizers.sophiah import SophiaH

__all__ = ["AGD", "KFAC", "MFAC", "OASIS", "AdaHessian", "HutchinsonEstimator", "Shampoo", "SophiaH", "smooth_"]
