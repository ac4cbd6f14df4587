"""Forward capture (Recorder.capture) and the lean hook path, against W(t) @ probes recomputed from weight
snapshots saved at every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dyn
from dyn.errors import ConfigError

D, M = 10, 4


def _problem(seed: int = 0, n: int = 10):
    """A bias-free linear layer, its full batch x (row 0 the signal, rows 1-6 the noise, 7-9 an extra probe set)
    and a site on it that also tracks the weights' change."""
    torch.manual_seed(seed)
    x = torch.randn(n, D, dtype=torch.float64)
    target = torch.randn(n, M, dtype=torch.float64)
    layer = torch.nn.Linear(D, M, bias=False, dtype=torch.float64)
    probes = x.clone()  # the site keeps its own copy: tests modify x in place
    site = dyn.Site(layer.weight, signals={"mu": probes[0]}, noise=probes[1:7],
                    extra={"other": ("other", probes[7:])}, track_change=True)
    return layer, x, target, site


def _brute(snapshots: dict[int, torch.Tensor], site: dyn.Site) -> dict[str, np.ndarray]:
    """Inner products of every saved W(t) with the site's probes, and ‖w_r(t) − w_r(0)‖²."""
    steps = sorted(snapshots)
    w = torch.stack([snapshots[t] for t in steps]).numpy()  # (T, m, d)
    mu = torch.stack(list(site.signals.values())).numpy()
    out = {"signal_inner": np.einsum("trd,kd->trk", w, mu),
           "noise_inner": np.einsum("trd,id->tri", w, site.noise.numpy()),
           "other_inner": np.einsum("trd,id->tri", w, site.extra["other"][1].numpy())}
    out["weight_change_sq"] = ((w - w[0]) ** 2).sum(-1)[..., None]
    return out


def _check(path, snapshots, site, steps):
    ds = xr.open_zarr(path, group="w")
    assert ds["step"].values.tolist() == steps
    expected = _brute({t: snapshots[t] for t in steps}, site)
    for var, values in expected.items():
        np.testing.assert_allclose(ds[var].values, values, rtol=2e-6, atol=1e-6, err_msg=var)


def _run(tmp_path, *, feed, capture_inputs="x", every=1, steps=6, micro=1, chunk_bytes=1 << 20, rows=None,
         forwards=1):
    """Train with a capturing recorder; ``feed(x, t)`` is what the loop passes to the layer."""
    layer, x, target, site = _problem()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    snapshots = {0: layer.weight.detach().clone()}
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": site}, optimizer=opt, every=every, chunk_bytes=chunk_bytes)
    rec.capture("w", layer, x if capture_inputs == "x" else capture_inputs, rows=rows)
    with rec:
        for t in range(steps):
            opt.zero_grad()
            for k in range(micro):  # gradient accumulation over micro-batches (or repeated full batches)
                inp = feed(x, t) if micro == 1 else x[k::micro]
                for _ in range(forwards):
                    out = layer(inp)
                loss = ((out - (target if micro == 1 else target[k::micro])) ** 2).mean() / micro
                loss.backward()
            opt.step()
            rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()
    return rec, snapshots, site


def test_full_batch_capture_matches_brute_force_and_skips_the_gemm(tmp_path):
    rec, snapshots, site = _run(tmp_path, feed=lambda x, t: x, chunk_bytes=300)  # many chunk boundaries
    _check(tmp_path / "c.zarr", snapshots, site, list(range(7)))
    # steps 0..5 came from the forward passes; step 6 (after the last one) was computed at close
    assert rec.stats["captured"] == 6 and rec.stats["fallback"] == 1


def test_repeated_full_batch_forwards_capture_once(tmp_path):
    rec, snapshots, site = _run(tmp_path, feed=lambda x, t: x, forwards=3)
    _check(tmp_path / "c.zarr", snapshots, site, list(range(7)))
    assert rec.stats["captured"] == 6


def test_forward_on_other_input_falls_back_to_the_gemm(tmp_path):
    # The loop feeds a copy of x: same values, another tensor. Its outputs are never taken.
    rec, snapshots, site = _run(tmp_path, feed=lambda x, t: x.clone() + 0.0 * t)
    _check(tmp_path / "c.zarr", snapshots, site, list(range(7)))
    assert rec.stats["captured"] == 0 and rec.stats["fallback"] == 7


def test_inputs_modified_in_place_are_not_the_probes_anymore(tmp_path):
    def feed(x, t):
        if t == 2:
            with torch.no_grad():
                x[1:] *= 2.0  # augmentation in place: from now on x no longer holds the probes
        return x

    rec, snapshots, site = _run(tmp_path, feed=feed)
    _check(tmp_path / "c.zarr", snapshots, site, list(range(7)))  # still W(t) @ the original probes
    assert rec.stats["captured"] == 2 and rec.stats["fallback"] == 5


def test_gradient_accumulation_over_minibatches_falls_back(tmp_path):
    rec, snapshots, site = _run(tmp_path, feed=None, micro=2)
    _check(tmp_path / "c.zarr", snapshots, site, list(range(7)))
    assert rec.stats["captured"] == 0


@pytest.mark.parametrize("every", [2, 3])
def test_schedule_every_k(tmp_path, every):
    rec, snapshots, site = _run(tmp_path, feed=lambda x, t: x, every=every, steps=7)
    steps = sorted({*range(0, 8, every), 7})
    _check(tmp_path / "c.zarr", snapshots, site, steps)
    assert rec.stats["captured"] + rec.stats["fallback"] == len(steps)
    assert rec.stats["captured"] == len(steps) - 1  # only the last step, with no forward after it, is computed


def test_probes_at_known_rows_of_a_larger_input(tmp_path):
    layer, x, target, site = _problem()
    batch = torch.cat([torch.randn(2, D, dtype=torch.float64), x, torch.randn(1, D, dtype=torch.float64)])
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    snapshots = {0: layer.weight.detach().clone()}
    with dyn.Recorder(tmp_path / "c.zarr", {"w": site}, optimizer=opt) as rec:
        rec.capture("w", layer, batch, rows=slice(2, 2 + x.shape[0]))
        for t in range(5):
            loss = layer(batch).square().mean()
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()
    _check(tmp_path / "c.zarr", snapshots, site, list(range(6)))
    assert rec.stats["captured"] == 4  # capture() after open: steps 1-4 (0 recorded at open, 5 at close)


def test_probes_at_scattered_rows(tmp_path):
    layer, x, target, site = _problem()
    order = torch.tensor([3, 0, 6, 1, 4, 2, 5, 9, 7, 8])
    shuffled = torch.empty_like(x)
    shuffled[order] = x  # probe i sits at row order[i]
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    snapshots = {0: layer.weight.detach().clone()}
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": site}, optimizer=opt)
    with pytest.raises(ConfigError, match="not site 'w''s probe vectors"):
        rec.capture("w", layer, shuffled)  # rows in the wrong order are refused, not recorded scrambled
    rec.capture("w", layer, shuffled, rows=order.tolist())
    with rec:
        for t in range(4):
            loss = layer(shuffled).square().mean()
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()
    _check(tmp_path / "c.zarr", snapshots, site, list(range(5)))
    assert rec.stats["captured"] == 4


def test_weights_changed_outside_the_optimizer_warn_and_switch_capture_off(tmp_path):
    layer, x, target, site = _problem()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    snapshots = {0: layer.weight.detach().clone()}
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": site}, optimizer=opt)
    rec.capture("w", layer, x)
    with rec:
        for t in range(5):
            loss = layer(x).square().mean()
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()  # what the optimizer hook recorded
            if t == 2:
                with torch.no_grad():
                    layer.weight.mul_(0.5)  # a projection after the step: the next forward sees other weights
                changed = layer.weight.detach().clone()
                with pytest.warns(UserWarning, match="changed outside optimizer.step"):
                    layer(x)
                    opt.zero_grad(); layer(x).square().mean().backward(); opt.step()
                snapshots[t + 2] = layer.weight.detach().clone()
                break
    ds = xr.open_zarr(tmp_path / "c.zarr", group="w")
    assert ds["step"].values.tolist() == [0, 1, 2, 3, 4]
    # step 3's values are those of the changed weights (never the stale ones of step 2), the rest exact
    snapshots_used = {**snapshots, 3: changed}
    _check(tmp_path / "c.zarr", snapshots_used, site, [0, 1, 2, 3, 4])
    assert rec.stats["captured"] == 3  # steps 0-2; capture was off for step 4


def test_loop_without_optimizer(tmp_path):
    layer, x, target, site = _problem()
    snapshots = {0: layer.weight.detach().clone()}
    with dyn.Recorder(tmp_path / "c.zarr", {"w": site}) as rec:
        rec.capture("w", layer, x)
        for t in range(4):
            loss = layer(x).square().mean()
            loss.backward()
            with torch.no_grad():
                layer.weight -= 0.1 * layer.weight.grad
                layer.weight.grad = None
            rec.step()
            rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()
    # step 0 was recorded at open, before capture(): from the GEMM; steps 1-3 by forward; 4 at close
    _check(tmp_path / "c.zarr", snapshots, site, list(range(5)))
    assert rec.stats["captured"] == 3 and rec.stats["fallback"] == 1


def test_flush_every_settles_rows_awaiting_their_forward(tmp_path):
    layer, x, target, site = _problem()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    snapshots = {0: layer.weight.detach().clone()}
    with dyn.Recorder(tmp_path / "c.zarr", {"w": site}, optimizer=opt, flush_every=2) as rec:
        rec.capture("w", layer, x)
        for t in range(7):
            loss = layer(x).square().mean()
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
            snapshots[t + 1] = layer.weight.detach().clone()
            if t == 3:
                rec.flush()
    _check(tmp_path / "c.zarr", snapshots, site, list(range(8)))
    assert rec.stats["captured"] >= 1 and rec.stats["fallback"] >= 2


@pytest.mark.parametrize("make, message", [
    (lambda layer, x: ("w", torch.nn.Linear(D, M, bias=True, dtype=torch.float64), x), "has a bias|not site"),
    (lambda layer, x: ("w", torch.nn.Conv1d(1, M, D), x), "must be a torch.nn.Linear"),
    (lambda layer, x: ("w", torch.nn.Linear(D, M, bias=False, dtype=torch.float64), x), "is not site 'w''s weight"),
    (lambda layer, x: ("v", layer, x), "no site named 'v'"),
    (lambda layer, x: ("w", layer, torch.randn(10, D, dtype=torch.float64)), "not site 'w''s probe vectors"),
    (lambda layer, x: ("w", layer, x[:5]), "5 input rows selected, site 'w' has 10 probes"),
    (lambda layer, x: ("w", layer, x.float()), "inputs are torch.float32"),
    (lambda layer, x: ("w", layer, x[:, :3]), r"inputs must be a tensor \(\.\.\., 10\)"),
])
def test_bad_captures_are_refused_in_one_line(tmp_path, make, message):
    layer, x, target, site = _problem()
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": site})
    with pytest.raises(ConfigError, match=message) as info:
        rec.capture(*make(layer, x))
    assert "\n" not in str(info.value)


def test_bias_is_refused(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(5, D)
    layer = torch.nn.Linear(D, M)
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": dyn.Site(layer.weight, signals={"mu": x[0]}, noise=x[1:])})
    with pytest.raises(ConfigError, match="has a bias"):
        rec.capture("w", layer, x)


def test_capture_twice_is_refused(tmp_path):
    layer, x, target, site = _problem()
    rec = dyn.Recorder(tmp_path / "c.zarr", {"w": site})
    rec.capture("w", layer, x)
    with pytest.raises(ConfigError, match="already captured"):
        rec.capture("w", layer, x)


def test_hook_path_allocates_nothing_per_step(tmp_path):
    """After the chunk buffers exist, recording a step and logging a loss allocate no tensor memory."""
    from torch.profiler import ProfilerActivity, profile

    layer, x, target, site = _problem()
    loss = torch.tensor(0.5, dtype=torch.float32, requires_grad=True) * 2.0
    with dyn.Recorder(tmp_path / "c.zarr", {"w": site}, chunk_bytes=1 << 20) as rec:
        for _ in range(2):  # the first log allocates the chunk's scalar buffer
            rec.step(); rec.log(loss=loss, acc=0.25)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            for _ in range(5):
                rec.step(); rec.log(loss=loss, acc=0.25)
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events())
    assert allocated == 0
    ds = xr.open_datatree(tmp_path / "c.zarr", engine="zarr")
    np.testing.assert_allclose(ds["loss"].values[:-1], 1.0)
    np.testing.assert_allclose(ds["acc"].values[:-1], 0.25)


def test_the_old_track_change_path_agrees(tmp_path):
    """weight_change_sq from the preallocated buffer equals the plain formula, with large and tiny changes."""
    layer, x, target, site = _problem()
    w0 = layer.weight.detach().clone()
    expected = []
    with dyn.Recorder(tmp_path / "c.zarr", {"w": site}) as rec:
        for scale in (1e-7, 1.0, 3.0):
            with torch.no_grad():
                layer.weight.copy_(w0 + scale * torch.randn_like(w0))
            rec.step()
            expected.append(torch.sub(layer.weight.detach(), w0).square().sum(1).numpy())
    ds = xr.open_zarr(tmp_path / "c.zarr", group="w")
    np.testing.assert_allclose(ds["weight_change_sq"].values[1:, :, 0], np.stack(expected), rtol=2e-6, atol=0)  # stored as float32


def test_hook_path_benchmark_runs_every_loop(tmp_path):
    """benchmarks/hook_path.py at a tiny size: every loop runs, the capture loop really captures (no timings)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[2] / "benchmarks" / "hook_path.py"
    spec = importlib.util.spec_from_file_location("hook_path", script)
    bench_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_mod)
    bench = bench_mod.Bench(dict(d=30, n=6, n_test=4, m=3), "cpu", tmp_path)
    res = bench_mod.per_step(bench, 3, 1)
    assert set(res) == set(bench_mod.PATHS) and all(set(r) == {"train", "run"} for r in res.values())
    over = bench_mod.hook_overhead(bench, 4, 1)
    assert over["gemm"] > 0 and over["recorder"] > 0
    # the capture loop records what the hook loop records (the same training, the same values)
    bench.run("hook", 4)
    hook = xr.open_zarr(tmp_path / "hook.zarr", group="h")["noise_inner"].values
    bench.run("capture", 4)
    cap = xr.open_zarr(tmp_path / "capture.zarr", group="h")["noise_inner"].values
    np.testing.assert_allclose(cap, hook, rtol=1e-4, atol=1e-5)
    assert hook.shape[0] == 5


def test_a_fresh_input_at_a_reused_address_is_not_taken_for_the_probes(tmp_path):
    """The recorder holds the captured input, so a new tensor of the same shape (augmented inputs, here) cannot be
    allocated at its address and pass for the probes; those steps fall back to the GEMM (review finding)."""
    torch.manual_seed(0)
    d, n = 200, 2000
    mu, xi = torch.randn(1, d), torch.randn(n - 1, d)
    layer = torch.nn.Linear(d, 3, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    site = dyn.Site(layer.weight, signals={"mu": mu[0]}, noise=xi)
    path = tmp_path / "c.zarr"
    rec = dyn.Recorder(path, {"w": site}, optimizer=opt)
    x = torch.cat([mu, xi])
    rec.capture("w", layer, x)
    weights = []
    with rec:
        weights.append(layer.weight.detach().clone())
        for _ in range(4):
            del x  # the loop's last reference: only the recorder's keeps its memory from being reused
            x = torch.cat([mu * 1.5, xi * 1.5])
            loss = layer(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            weights.append(layer.weight.detach().clone())
    probes = torch.cat([mu, xi]).T
    tree = xr.open_datatree(path, engine="zarr")["w"]
    got = np.concatenate([tree["signal_inner"].values, tree["noise_inner"].values], axis=2)
    want = np.stack([(w @ probes).numpy() for w in weights])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert rec.stats["captured"] == 0
