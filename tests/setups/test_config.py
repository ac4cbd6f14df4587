from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

import dyn
from dyn.setups.huang2024 import Config
from dyn.setups.base import parse_overrides


def test_preset_loads_paper_numbers():
    cfg = dyn.load_preset("huang2024-figure1")
    assert (cfg.d, cfg.n, cfg.n_test, cfg.m, cfg.steps, cfg.eta) == (2000, 100, 200, 50, 200, 0.01)
    assert (cfg.mu_norm, cfg.mu_tilde_norm, cfg.nu_norm, cfg.sigma_xi, cfg.sigma_eps) == (5.0, 15.0, 2.0, 1.0, 0.1)
    assert cfg.snr == pytest.approx(5 / math.sqrt(2000))
    assert cfg.n * cfg.snr**2 == pytest.approx(1.25)
    assert cfg.c_mu == 3.0
    # the choices the paper leaves open are documented in the preset and carried with the config
    assert {"tau", "sigma0", "negatives"} <= set(cfg.notes)


def test_presets_listed_with_descriptions():
    presets = dyn.list_presets()
    assert "huang2024-figure1" in presets and presets["huang2024-figure1"]
    assert "huang2024-tiny" in presets


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"d": 0}, "d must be a positive integer"),
        ({"n": -3}, "n must be a positive integer"),
        ({"m": 0}, "m must be a positive integer"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"sigma_xi": -1.0}, "sigma_xi must be a finite number >= 0"),
        ({"sigma0": -0.1}, "sigma0 must be a finite number >= 0"),
        ({"tau": 0.0}, "tau must be a positive finite number"),
        ({"eta": float("nan")}, "eta must be a positive finite number"),
        ({"modality": "tri"}, "modality must be one of"),
        ({"negatives": "some"}, "negatives must be a positive integer or 'all'"),
        ({"negatives": 0}, "negatives must be a positive integer or 'all'"),
        ({"mu_axis": 40}, "mu_axis must lie in [0, d=40)"),
        ({"d": 2.5}, "d must be of type int"),
        ({"redraw_eps": 1}, "redraw_eps must be of type bool"),
        ({"optimizer": "sgd", "batch_size": 0}, "batch_size must lie in [1, n=10]"),
    ],
)
def test_bad_config_values(tiny, changes, message):
    with pytest.raises(dyn.ConfigError) as err:
        tiny(**changes)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_suggests():
    expected = r"unknown config key 'sigma_x' for setup huang2024 \(did you mean 'sigma_xi'\? valid keys: modality, d,"
    with pytest.raises(dyn.ConfigError, match=expected):
        parse_overrides(["sigma_x=1"], Config)
    with pytest.raises(dyn.ConfigError, match="unknown preset 'huang2024-figure2'"):
        dyn.load_preset("huang2024-figure2")


def test_overrides_are_typed():
    assert parse_overrides(["n=7", "tau=0.5", "negatives=all", "modality=multi", "redraw_eps=true"], Config) == {
        "n": 7, "tau": 0.5, "negatives": "all", "modality": "multi", "redraw_eps": True}
    with pytest.raises(dyn.ConfigError, match="expects key=value"):
        parse_overrides(["tau"], Config)
    with pytest.raises(dyn.ConfigError, match="empty value"):
        parse_overrides(["tau="], Config)
    with pytest.raises(dyn.ConfigError, match="cannot use value"):
        parse_overrides(["tau=inf"], Config)
    with pytest.raises(dyn.ConfigError, match="tau must be of type float, got str"):
        dyn.load_preset("huang2024-tiny", **parse_overrides(["tau=fast"], Config))


def test_config_round_trips_through_json():
    cfg = dyn.load_preset("huang2024-figure1", modality="multi", negatives=20)
    again = Config.from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg and again.notes == cfg.notes


@given(st.text(max_size=30))
def test_override_parser_never_crashes(text):
    """Whatever a user types after --set, the parser returns values or raises ConfigError, nothing else."""
    try:
        out = parse_overrides([text], Config)
    except dyn.ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(out) == 1
