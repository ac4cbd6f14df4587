"""Guard rails of issue 11: stale weight copies, logging one step twice, logging before the optimizer step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import dyn


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3, bias=False)
    x, y = torch.randn(10, 6), torch.randn(10, 3)
    return model, x, y, torch.optim.SGD(model.parameters(), lr=0.1)


def test_a_computed_copy_of_the_weight_is_refused():
    """Regression: Site(m.weight * 1.0, ...) recorded constants silently."""
    model, x, _, _ = _setup()
    with pytest.raises(dyn.ConfigError, match="copy that never changes"):
        dyn.Site(model.weight * 1.0, signals={"mu": torch.ones(6)}, noise=x)
    dyn.Site(model.weight.view(3, 6), signals={"mu": torch.ones(6)}, noise=x)  # a view is live: accepted


def test_a_detached_clone_is_warned_about_with_an_optimizer(tmp_path):
    model, x, _, opt = _setup()
    site = dyn.Site(model.weight.detach().clone(), signals={"mu": torch.ones(6)}, noise=x)
    with pytest.warns(UserWarning, match="shares no memory with the optimizer"):
        dyn.Recorder(tmp_path / "s.zarr", sites={"w": site}, optimizer=opt)
    live = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dyn.Recorder(tmp_path / "l.zarr", sites={"w": live}, optimizer=opt)


def test_conv_weight_in_channels_last_is_refused():
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    with pytest.raises(dyn.ConfigError, match="without a copy"):
        dyn.Site(conv.weight, signals={"mu": torch.ones(27)}, noise=torch.randn(2, 27))


def test_logging_a_step_twice_warns(tmp_path):
    """Regression: a second rec.log for the same step overwrote the first silently."""
    model, x, y, opt = _setup()
    site = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    with dyn.Recorder(tmp_path / "d.zarr", sites={"w": site}, optimizer=opt) as rec:
        loss = ((model(x) - y) ** 2).mean()
        loss.backward(); opt.step(); opt.zero_grad()
        rec.log(loss=loss)
        with pytest.warns(UserWarning, match="loss already logged at step 0"):
            rec.log(loss=loss * 2)
        rec.log(acc=1.0)  # another name for the same step is fine
    tree = xr.open_datatree(tmp_path / "d.zarr", engine="zarr")
    assert tree["loss"].values[0] == pytest.approx(2 * float(loss.detach()))


def test_logging_before_the_optimizer_step_warns(tmp_path):
    """Regression: rec.log before opt.step() shifted the loss by one step and overwrote step 0 silently."""
    model, x, y, opt = _setup()
    site = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    caught = []
    with dyn.Recorder(tmp_path / "e.zarr", sites={"w": site}, optimizer=opt) as rec:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                loss = ((model(x) - y) ** 2).mean()
                rec.log(loss=loss)  # wrong place
                loss.backward(); opt.step(); opt.zero_grad()
    messages = [str(w.message) for w in caught]
    assert any("before the first optimizer step" in m for m in messages)
    assert any("already logged at step 0" in m for m in messages)


def test_the_right_order_is_silent(tmp_path):
    model, x, y, opt = _setup()
    site = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dyn.Recorder(tmp_path / "ok.zarr", sites={"w": site}, optimizer=opt) as rec:
            for _ in range(3):
                loss = ((model(x) - y) ** 2).mean()
                loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
    assert np.isfinite(xr.open_datatree(tmp_path / "ok.zarr", engine="zarr")["loss"].values[:3]).all()


@pytest.mark.parametrize("weight, signal, match", [
    (torch.zeros(3, 6, dtype=torch.complex64), torch.ones(6), "dtype complex64"),
    (torch.zeros(3, 6, dtype=torch.int64), torch.ones(6), "dtype int64"),
    (torch.zeros(0, 6), torch.ones(6), "is empty"),
    (torch.zeros(3, 6), torch.ones(6, dtype=torch.complex64), "is complex"),
])
def test_inputs_that_produce_nothing_usable_are_refused_at_the_site(tmp_path, weight, signal, match):
    """Regression (issue 21 item 6): complex64 / int64 weights wrote a whole store that dyn.open then refused; a
    weight with 0 neurons died with a ZeroDivisionError inside Recorder."""
    with pytest.raises(dyn.ConfigError, match=match):
        dyn.Site(weight, signals={"mu": signal}, noise=torch.randn(4, 6))
    assert not (tmp_path / "s.zarr").exists()


def test_a_zero_signal_vector_is_warned_about():
    """A zero signal has no gamma (issue 21 item 6); a class mean of blank conv patches is one, and a projection
    still measures the rest, so Site warns and `verify` fails an undefined decomposition (below)."""
    with pytest.warns(UserWarning, match="the zero vector"):
        dyn.Site(torch.zeros(3, 6), signals={"mu": torch.zeros(6)}, noise=torch.randn(4, 6))


def test_a_loop_without_optimizer_that_never_steps_is_an_error_at_log(tmp_path):
    """Regression (issue 21 item 6): without optimizer= and without rec.step() the store was "complete" with one
    step, and the warnings blamed rec.log."""
    model, x, y, opt = _setup()
    site = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    with pytest.raises(dyn.ConfigError, match="rec.step\\(\\) was never called"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dyn.Recorder(tmp_path / "s.zarr", sites={"w": site}) as rec:
                for _ in range(3):
                    loss = ((model(x) - y) ** 2).mean()
                    loss.backward(); opt.step(); opt.zero_grad()
                    rec.log(loss=loss)
    assert dyn.open(tmp_path / "s.zarr").attrs["status"] != "complete"
    # the same loop calling rec.step() records every step
    with dyn.Recorder(tmp_path / "ok.zarr", sites={"w": site}) as rec:
        for _ in range(3):
            loss = ((model(x) - y) ** 2).mean()
            loss.backward(); opt.step(); opt.zero_grad()
            rec.step()
            rec.log(loss=loss)
    assert dyn.open(tmp_path / "ok.zarr").sizes["step"] == 4


def test_verify_does_not_pass_an_undefined_decomposition(tmp_path):
    """Regression (issue 21 item 6): a store recorded with a zero signal vector (Site refuses it now; here it is
    slipped past the check) made `dyn verify` print "explains nan ... (relative error nan)" as ok."""
    model, x, y, opt = _setup()
    site = dyn.Site(model.weight, signals={"mu": torch.ones(6)}, noise=x)
    site.signals["mu"] = torch.zeros(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dyn.Recorder(tmp_path / "z.zarr", sites={"w": site}, optimizer=opt) as rec:
            for _ in range(3):
                loss = ((model(x) - y) ** 2).mean()
                loss.backward(); opt.step(); opt.zero_grad()
                rec.log(loss=loss)
        checks = {c.name: c for c in dyn.verify(tmp_path / "z.zarr")}
    assert checks["decomposition w"].ok is False and "undefined" in checks["decomposition w"].detail
