"""The coloured-digits protocol of Table 1: data, captions, random baselines, settings, and the gap itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dyn.setups.huang2024.colored_digits import (COLOUR_WORDS, COLOURS, DIGIT_WORDS, DigitsConfig, alignment, encode_captions,
                                make_captions, make_colored_digits, random_like, train_digits)
from dyn.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return make_colored_digits(0)


def test_colour_correlation_reversal_and_label_noise(data):
    ctr, cte = data.class_train, data.class_test
    train_match = (data.colour_train == ctr).float().mean().item()
    assert 0.74 < train_match < 0.86  # 0.775 + 0.225 / 10 expected
    assert 0.74 < (data.colour_test == (cte + 1) % 10).float().mean().item() < 0.86  # the next class's colour
    assert (data.colour_test == cte).float().mean().item() < 0.06
    for y, c in ((data.y_train, ctr), (data.y_test, cte)):
        assert 0.06 < (y != c).float().mean().item() < 0.14
    for x, colour in zip(data.x_train[:50], data.colour_train[:50]):  # each image is intensity x its colour
        rgb = torch.as_tensor(COLOURS[int(colour)])
        assert torch.allclose(x, rgb[:, None, None] * (x.sum(0) / rgb.sum()), atol=1e-6)


def test_train_correlation_changes_the_colours_only(data):
    none = make_colored_digits(0, p_colour=0.0)
    for name in ("class_train", "y_train", "x_test", "y_test", "colour_test"):
        assert torch.equal(getattr(none, name), getattr(data, name)), name
    assert (none.colour_train == none.class_train).float().mean().item() < 0.16  # chance: 0.1


def test_shape_and_colour_directions(data):
    shapes = data.shape_directions.reshape(10, 3, 64)
    assert torch.equal(shapes[:, 0], shapes[:, 1]) and torch.equal(shapes[:, 0], shapes[:, 2])  # colour-neutral
    assert torch.linalg.matrix_rank(data.colour_directions).item() == 3  # colour x the same mean digit
    s = torch.nn.functional.normalize(data.shape_directions, dim=1)
    c = torch.nn.functional.normalize(data.colour_directions, dim=1)
    assert (s @ c.T).abs().max().item() < 0.25


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_caption_names_its_digit_and_a_colour_only_at_the_rate(data, rate):
    captions = make_captions(data, rate, seed=0)
    tokens = encode_captions(captions)
    with_colour = []
    for i, caption in enumerate(captions):
        words = caption.split()
        k, c = int(data.class_train[i]), int(data.colour_train[i])
        assert [w for w in words if w in DIGIT_WORDS] == [DIGIT_WORDS[k]]  # the digit shown, not the noisy label
        colour_words = [w for w in words if w in COLOUR_WORDS]
        assert colour_words in ([], [COLOUR_WORDS[c]])
        with_colour.append(bool(colour_words))
        assert tokens[i, k] == 1 and tokens[i, :10].sum() == 1
        assert tokens[i, 10:].sum() == len(colour_words) and (not colour_words or tokens[i, 10 + c] == 1)
    share = np.mean(with_colour)
    assert share == rate if rate in (0.0, 1.0) else abs(share - rate) < 0.05


def test_captions_are_deterministic_and_nested(data):
    half, again = make_captions(data, 0.5, seed=3), make_captions(data, 0.5, seed=3)
    assert half == again != make_captions(data, 0.5, seed=4)
    more = make_captions(data, 0.8, seed=3)
    coloured = lambda caps: {i for i, c in enumerate(caps) if c.split()[1] != "handwritten"}  # noqa: E731
    assert coloured(half) < coloured(more)  # a higher rate adds colour words, keeping the earlier ones
    assert all(half[i] == more[i] for i in coloured(half))


@pytest.mark.parametrize("caption", ["a handwritten three four", "a red blue handwritten one", "a picture"])
def test_encode_captions_refuses_ambiguous_captions(caption):
    with pytest.raises(ConfigError, match="one digit"):
        encode_captions([caption])


def test_random_baseline_has_same_count_and_norms(data):
    vectors = data.shape_directions
    rnd = random_like(vectors, torch.Generator().manual_seed(1))
    assert rnd.shape == vectors.shape
    assert torch.allclose(rnd.norm(dim=1), vectors.norm(dim=1))
    cos = torch.nn.functional.normalize(rnd, dim=1) @ torch.nn.functional.normalize(vectors, dim=1).T
    assert cos.abs().max().item() < 0.5  # random, not a copy
    assert not torch.equal(rnd, random_like(vectors, torch.Generator().manual_seed(2)))


def test_alignment_is_mean_over_neurons_of_best_cosine():
    weights = np.array([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [-1.0, 0.0]]])  # (step, neuron, feature)
    directions = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert np.allclose(alignment(weights, directions), [1.0, (np.sqrt(0.5) + 1.0) / 2])


def test_every_setting_is_documented_and_serialisable():
    stored = DigitsConfig().to_dict()
    undocumented = set(stored) - {"modality", "seed", "notes"} - set(stored["notes"])
    assert not undocumented
    assert json.loads(json.dumps(stored)) == stored


def test_train_digits_refuses_data_of_another_protocol(data):
    with pytest.raises(ConfigError, match="data were made with"):
        train_digits(DigitsConfig(p_colour=0.5), data)
    with pytest.raises(ConfigError, match="modality"):
        train_digits(DigitsConfig(modality="both"), data)


def test_recording_does_not_change_the_run(data, tmp_path):
    config = DigitsConfig(modality="multi", epochs=3)
    assert train_digits(config, data, out=tmp_path / "run.zarr") == train_digits(config, data)


def test_default_protocol_shows_the_gap_and_its_mechanism(data):
    """Seed 0 of the default protocol (measured: single 6% / multi 71% OOD): a 25-point margin on each bound."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train_digits(DigitsConfig(modality="single"), data)
        multi = train_digits(DigitsConfig(modality="multi"), data)
    finally:
        torch.set_num_threads(threads)
    assert single["test_acc"] < 0.3 and multi["test_acc"] > single["test_acc"] + 0.4
    assert single["colour_follow"] > 0.4 > multi["colour_follow"]  # single-modal predictions follow colour
    assert single["align_colour"] > multi["align_colour"] and multi["align_shape"] > single["align_shape"]
