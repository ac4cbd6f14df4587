"""The data of Definition 2.1 (Huang, Han et al. 2025) and the label flips of Algorithm 1: the signal–noise CNN
family's data (:mod:`dyn.setups.signal_noise_cnn.data`) without label-flipping noise, noise orthogonal to μ.

Each point has two patches: the signal ``y·μ`` and the noise ``ξ ~ N(0, σ_p² (I − μμᵀ/‖μ‖²))``, with Rademacher
``y``; drawn from generators seeded ``seed`` (training data), ``seed + 2`` (test set) and ``seed + 3`` (flips).
"""

from __future__ import annotations

from ..signal_noise_cnn.data import CNNData as LabelNoiseData
from ..signal_noise_cnn.data import draw_flips, draw_noise, make_data

__all__ = ["LabelNoiseData", "make_data", "draw_noise", "draw_flips"]
