"""Coloured digits: the paper's ColoredMNIST protocol (Table 1) on scikit-learn's bundled 8×8 digits.

Nothing is downloaded: the 1,797 handwritten digits ship with scikit-learn. Each grey image becomes an RGB image
``intensity × colour``:

- 10 classes, 10 colours; a training image gets its class's colour with probability 0.775 and a uniformly random
  colour otherwise; test images get the colour of the *next* class (a derangement) with probability 0.775, so the
  colour–class correlation of training is broken and reversed at test time;
- 10% label noise in training and test (a label replaced by a uniformly random other class).

Single-modal: SimCLR-style contrastive learning of the image alone, with augmentations that keep hue (random
shifts via pad-and-crop, intensity scaling, Gaussian pixel noise); colour therefore stays available as a shortcut,
as in the paper's single-modal result. Multi-modal: CLIP-style contrastive learning of image and caption, the
caption being one-hot digit and colour tokens (the paper's "ideal language encoder": a linear map of the tokens).
Both use the same image encoder (an MLP on the 192 pixel values); a linear probe on the image embedding gives
train and test accuracy.

The recorder watches the encoder's first layer: signal directions are the 10 class-mean digit shapes and the 10
colour directions, noise directions are per-sample residuals of a subset of training images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError

__all__ = ["ColoredDigits", "make_colored_digits", "DigitsConfig", "train_digits", "PAPER_TABLE1"]

#: Table 1 of the paper (ColoredMNIST): train / test accuracy in %.
PAPER_TABLE1 = {"single": (88.43, 12.68), "multi": (87.77, 82.13)}

COLOURS = np.array([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0],
    [0.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.0, 0.5, 0.5], [0.5, 0.5, 0.5],
], dtype=np.float32)


@dataclass
class ColoredDigits:
    """Images ``(N, 3, 8, 8)`` in [0, 1], noisy labels, true classes and colours, for train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    class_train: torch.Tensor
    colour_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_test: torch.Tensor
    colour_test: torch.Tensor
    shape_directions: torch.Tensor  # (10, 192): class-mean digit shape, equal in every channel
    colour_directions: torch.Tensor  # (10, 192): colour times the mean digit mask


def make_colored_digits(seed: int = 0, *, p_colour: float = 0.775, label_noise: float = 0.1,
                        test_fraction: float = 0.33) -> ColoredDigits:
    """Colour scikit-learn's digits with the ColoredMNIST protocol (module docstring), deterministically by seed.

    Examples
    --------
    >>> data = make_colored_digits(0)
    >>> data.x_train.shape[1:], int(data.y_train.max()), data.shape_directions.shape
    (torch.Size([3, 8, 8]), 9, torch.Size([10, 192]))
    """
    from sklearn.datasets import load_digits

    if not 0 <= p_colour <= 1 or not 0 <= label_noise < 1:
        raise ConfigError("p_colour must lie in [0, 1] and label_noise in [0, 1)")
    digits = load_digits()
    grey = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    classes = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(classes))
    n_test = int(round(test_fraction * len(classes)))
    test_idx, train_idx = order[:n_test], order[n_test:]

    def colourise(idx: np.ndarray, shift: int):
        cls = classes[idx]
        colour = np.where(rng.random(len(idx)) < p_colour, (cls + shift) % 10, rng.integers(0, 10, len(idx)))
        images = grey[idx][:, None] * COLOURS[colour][:, :, None, None]
        noisy = np.where(rng.random(len(idx)) < label_noise, (cls + rng.integers(1, 10, len(idx))) % 10, cls)
        return images, noisy, cls, colour

    xtr, ytr, ctr, coltr = colourise(train_idx, 0)
    xte, yte, cte, colte = colourise(test_idx, 1)
    mask = grey[train_idx].mean(0)
    shapes = np.stack([np.repeat(grey[train_idx][classes[train_idx] == k].mean(0)[None], 3, 0).reshape(-1)
                       for k in range(10)])
    colours = np.stack([(COLOURS[c][:, None, None] * mask[None]).reshape(-1) for c in range(10)])
    t = torch.as_tensor
    return ColoredDigits(t(xtr), t(ytr), t(ctr), t(coltr), t(xte), t(yte), t(cte), t(colte),
                         t(shapes.astype(np.float32)), t(colours.astype(np.float32)))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """SimCLR-style views that keep hue: random shift (pad 1, crop 8×8), intensity scaling, pixel noise."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dx = torch.randint(0, 3, (n,), generator=gen)
    dy = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(8)[None])  # (n, 8)
    cols = (dx[:, None] + torch.arange(8)[None])
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    scale = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
    return (out * scale + 0.05 * torch.randn(out.shape, generator=gen)).clamp(0, 1)


class ImageEncoder(nn.Module):
    """MLP on the 192 pixel values; ``first`` is the recorded layer (rows are neurons)."""

    def __init__(self, hidden: int = 128, out: int = 64):
        super().__init__()
        self.first = nn.Linear(192, hidden, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.first(x.reshape(x.shape[0], -1)))


@dataclass(frozen=True)
class DigitsConfig:
    """Settings of one coloured-digits run (all stored with the run)."""

    modality: str = "single"
    seed: int = 0
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    tau: float = 0.1
    hidden: int = 128
    embed: int = 64
    noise_probes: int = 150

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _clip_loss(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    a, b = nn.functional.normalize(a, dim=1), nn.functional.normalize(b, dim=1)
    logits = a @ b.T / tau
    target = torch.arange(a.shape[0])
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2


def train_digits(config: DigitsConfig, data: ColoredDigits, out=None) -> dict:
    """Train one run; record its first layer into ``out`` (a run store) when given; return probe accuracies.

    Returns
    -------
    dict
        ``train_acc``, ``test_acc`` (linear probe on the image embedding, noisy labels as in the paper) and the
        final loss.
    """
    from .probe import probe_accuracy
    from ...record import Recorder, Site

    if config.modality not in ("single", "multi"):
        raise ConfigError(f"modality must be 'single' or 'multi', got {config.modality!r}")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed + 7)
    enc = ImageEncoder(config.hidden, config.embed)
    params = list(enc.parameters())
    text = None
    if config.modality == "multi":
        text = nn.Linear(20, config.embed)  # one-hot digit token + one-hot colour token
        params += list(text.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    x = data.x_train
    flat = x.reshape(x.shape[0], -1)
    captions = torch.cat([nn.functional.one_hot(data.y_train, 10), nn.functional.one_hot(data.colour_train, 10)], 1).float()
    # noise probes: residuals of a subset of training images after removing their shape and colour directions
    basis = torch.linalg.qr(torch.cat([data.shape_directions, data.colour_directions]).T).Q  # (192, 20)
    sub = torch.randperm(x.shape[0], generator=gen)[: config.noise_probes]
    residual = flat[sub] - (flat[sub] @ basis) @ basis.T
    site = Site(enc.first.weight,
                signals={**{f"shape{k}": data.shape_directions[k] for k in range(10)},
                         **{f"colour{k}": data.colour_directions[k] for k in range(10)}},
                noise=residual, labels=data.y_train[sub])
    rec = None
    if out is not None:
        rec = Recorder(out, {"first": site}, optimizer=opt, config=config.to_dict(), seed=config.seed, overwrite=True,
                       attrs={"setup": "colored_digits", "modality": config.modality})
        rec.open()
    loss = torch.tensor(float("nan"))
    try:
        for _ in range(config.epochs):
            perm = torch.randperm(x.shape[0], generator=gen)
            for start in range(0, x.shape[0], config.batch_size):
                idx = perm[start:start + config.batch_size]
                if len(idx) < 2:
                    continue
                if config.modality == "single":
                    loss = _clip_loss(enc(augment(x[idx], gen)), enc(augment(x[idx], gen)), config.tau)
                else:
                    loss = _clip_loss(enc(x[idx]), text(captions[idx]), config.tau)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if rec is not None:
                    rec.log(loss=loss)
        with torch.no_grad():
            ztr, zte = enc(data.x_train), enc(data.x_test)
        result = {"train_acc": probe_accuracy(ztr, data.y_train, ztr, data.y_train, c=0.1),
                  "test_acc": probe_accuracy(ztr, data.y_train, zte, data.y_test, c=0.1),
                  "final_loss": float(loss.detach())}
        if rec is not None:
            rec.close("complete")
    except BaseException:
        if rec is not None:
            rec.close("interrupted")
        raise
    return result
