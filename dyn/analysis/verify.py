"""``dyn verify``: check that a run store is sound.

Checks the schema version, dims and coordinates, that ``step`` has no gaps or repeats, that the status matches
the contents (an unfinished run, interrupted or left by a writer that is gone, is sound up to its last commit:
the check says where it stopped and how it resumes), that every recorded value is finite and every chunk decodes,
and (when weights and probes are stored) that the recording agrees with the stored weights and how well the
decomposition rebuilds them.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DynError, StoreError
from ..store import STEP_VARS, check_codecs, open_run, read_attrs, reading, run_status
from ..store.reader import damaged_chunk, is_url, local_path
from ..store.writer import leftovers

__all__ = ["Check", "verify"]


def _unfinished(p: Path, status: str, attrs: dict, steps: np.ndarray) -> str:
    """What an unfinished run's status means: where it stopped and how it continues. Its recording is sound up to
    there (every commit is whole), so this is not a failure."""
    last = int(steps[-1]) if len(steps) else None
    if status == "running":
        return f"running: being written by another process (committed up to step {last})"
    what = "interrupted" if status == "interrupted" else "stale (marked running, but its writer is gone)"
    where = f"{what} at step {last}" if last is not None else f"{what} before its first recorded step"
    if not attrs.get("setup"):
        return where + "; recorded by a user's loop, so dyn cannot resume it"
    ckpt = attrs.get("checkpoint_step")
    start = f"from step {ckpt}" if isinstance(ckpt, int) else "from step 0 (no checkpoint)"
    return where + f"; resumable {start} with `dyn run --resume {shlex.quote(str(p))}`"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def verify(path: str | os.PathLike, *, residual_tol: float = 1e-4, recording_tol: float = 1e-4) -> list[Check]:
    """Run every check on the store at ``path``.

    The decomposition check of a site that stores weights and probes fails when the recorded inner products
    disagree with ``W @ probes`` of the stored initial and final weights (relative ``recording_tol``): the
    recording is corrupt. When they agree but the coefficients do not rebuild the final weights (relative
    ``residual_tol``) — a projection, or updates outside the probes' span (Adam, a hidden layer) — the check
    passes and says "recording sound, decomposition approximate" with the span coverage. A signal that the
    recording cannot separate from the noise probes (inside their span, or a γ error bound above its values:
    :func:`~dyn.analysis.coefficients.separation_note`) fails the check when the basis is near-dependent
    (independent in exact arithmetic but not at float32 precision: γ and ρ look exact and mean nothing) and is
    stated in the passing check's detail when it is dependent by construction (more probes than features, class
    means of the noise rows: a projection, said so).

    Raises
    ------
    StoreError
        When ``path`` is not a usable dyn store at all (not a store, newer schema, refused codecs): nothing to check.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> all(c.ok for c in verify(path))
    True
    """
    if is_url(path):  # it weighs the store's files (sizes, leftovers), which a URL reader does not list alike
        raise StoreError(f"{path}: verify checks a store's files on disk; download it first (fsspec: "
                         "fs.get(url, folder, recursive=True); W&B: artifact.download())")
    p = local_path(path)
    attrs = read_attrs(p)
    check_codecs(p)
    checks = [Check("schema", True, f"dyn store schema {attrs['dyn_schema_version']}")]
    try:
        tree = open_run(p)
    except DynError as exc:
        return checks + [Check("layout", False, str(exc))]
    checks.append(Check("layout", True, f"sites {', '.join(attrs['sites'])}; every dimension has a coordinate"))
    try:
        bad_chunk = damaged_chunk(p)
    except (DynError, OSError, ValueError) as exc:
        bad_chunk = f"cannot check the chunks' checksums: {exc}"
    if bad_chunk is not None:
        return checks + [Check("checksums", False, bad_chunk)]

    try:
        with reading(p, "step"):
            steps = np.asarray(tree["step"].values)
    except DynError as exc:
        return checks + [Check("steps", False, str(exc))]
    status = run_status(p, attrs)
    increasing = bool(np.all(np.diff(steps) > 0))
    stride = np.diff(steps[:-1]) if len(steps) > 2 else np.array([1])
    regular = increasing and (len(np.unique(stride)) <= 1) and (len(steps) == 0 or steps[0] == 0)
    schedule = attrs.get("schedule", "")
    gapless = bool(len(steps) == 0 or np.array_equal(steps, np.arange(steps[0], steps[0] + len(steps))))
    if schedule == "every(1)":
        ok = gapless and (len(steps) == 0 or steps[0] == 0)
        checks.append(Check("steps", ok, f"{len(steps)} steps {steps[0] if len(steps) else '-'}..{steps[-1] if len(steps) else '-'}"
                            + ("" if ok else ": gaps or repeats")))
    elif schedule.startswith(("log_spaced(", "warmup(")):  # irregular by design: increasing from 0 is the rule
        ok = increasing and (len(steps) == 0 or steps[0] == 0)
        checks.append(Check("steps", ok, f"{len(steps)} steps, schedule {schedule}"
                            + ("" if ok else ": not strictly increasing from 0")))
    else:
        checks.append(Check("steps", regular, f"{len(steps)} steps, schedule {schedule}"
                            + ("" if regular else ": not strictly increasing at a regular stride from 0")))

    if status == "complete":
        n_ok = attrs.get("n_recorded") == len(steps) and (len(steps) == 0 or attrs.get("last_step") == int(steps[-1]))
        checks.append(Check("status", n_ok, f"complete; n_recorded {attrs.get('n_recorded')}, last_step "
                            f"{attrs.get('last_step')} vs {len(steps)} steps ending at {steps[-1] if len(steps) else '-'}"))
        left = leftovers(p)
        if left:  # a kill during the close: files nothing uses (the recording itself is whole)
            size = sum(os.path.getsize(p / f) for f in left if (p / f).is_file())
            checks.append(Check("leftovers", False, f"{len(left)} files ({size / 2**20:.1f} MiB) of the finished run's "
                                f"checkpoint remain, e.g. {left[0]}; `dyn run --resume {p}` removes them"))
    elif status == "diverged":
        checks.append(Check("status", True, f"diverged at step {attrs.get('diverged_at')} (steps before it kept)"))
    elif status in ("interrupted", "stale", "running"):
        checks.append(Check("status", True, _unfinished(p, status, attrs, steps)))
    else:
        checks.append(Check("status", False, f"unknown status {status!r}"))

    bad = []
    try:
        for site in attrs["sites"]:
            ds = tree[site].to_dataset()
            for var in [v for v in ds.data_vars if "step" in ds[v].dims] or list(STEP_VARS):
                with reading(p, f"{site}/{var}"):
                    values = ds[var].values
                if not np.isfinite(values).all():
                    bad.append(f"{site}/{var}: {int((~np.isfinite(values)).sum())} non-finite values")
        loss = tree.ds.get("loss")
        if loss is not None and status != "diverged":
            with reading(p, "loss"):
                lv = loss.values
            n_bad = int(np.sum(~np.isfinite(lv[:-1]))) if attrs.get("log_at") == "previous" else int(np.sum(~np.isfinite(lv)))
            if n_bad and attrs.get("setup"):
                bad.append(f"loss: {n_bad} non-finite values")
    except DynError as exc:
        checks.append(Check("values", False, str(exc)))
    else:
        checks.append(Check("values", not bad, "; ".join(bad) if bad else "all recorded values finite and decodable"))

    from .coefficients import coefficients, reconstruction_residual, recording_error, separation_note

    for site in attrs["sites"]:
        ds = tree[site].to_dataset()
        if not {"weight_init", "weight_final", "signal_vectors", "noise_vectors"} <= set(ds.data_vars):
            why = ("no final weights yet (stored when the run completes)"
                   if "weight_init" in ds.data_vars and status != "complete" else "weights or probes not stored")
            checks.append(Check(f"decomposition {site}", True, f"not checked: {why}"))
            continue
        try:
            with reading(p, f"site {site!r}"):
                rec = recording_error(ds)
                c = coefficients(ds)
                res = reconstruction_residual(ds, c)
        except DynError as exc:
            checks.append(Check(f"decomposition {site}", False, str(exc)))
            continue
        # Corruption shows as recorded inner products that disagree with the stored weights and probes; an
        # approximate decomposition (a projection, or updates outside the probes' span) is a property of the model.
        if rec["rel"] > recording_tol:
            checks.append(Check(f"decomposition {site}", False, f"recorded inner products disagree with the stored "
                                f"weights by {rec['rel']:.2e} (relative; tolerance {recording_tol:g})"))
            continue
        if np.isnan(res["rel"]) and res["abs"] == 0:  # the weights never moved: the rebuild is exact
            exact = True
        elif not (np.isfinite(res["rel"]) and np.isfinite(res["coverage"])):
            checks.append(Check(f"decomposition {site}", False, f"the decomposition is undefined (relative error "
                                f"{res['rel']:.3g}, span coverage {res['coverage']:.3g}): a probe vector of zero norm "
                                "or a non-finite Gram matrix"))
            continue
        else:
            exact = res["rel"] <= residual_tol
        if exact:
            detail = (f"{res['method']} solve rebuilds W(step {res['step']}) to relative error {res['rel']:.2e} "
                      f"(tolerance {residual_tol:g})")
        else:
            detail = (f"recording sound (inner products match the stored weights to {rec['rel']:.1e}); decomposition "
                      f"approximate: {res['method']} on rank {c.attrs['rank']} of {c.attrs['n_basis']} probes explains "
                      f"{res['coverage']:.4f} of the change of W(step {res['step']}) (relative error {res['rel']:.2e})")
        ok = True
        note = separation_note(c)
        if note:
            # A basis dependent by construction (more probes than features, signals that are class means of the
            # noise rows) is a projection and says so; a near-dependent one (independent in exact arithmetic, not
            # at float32 precision: condition 7e5, 8e6) gives numbers that look exact and mean nothing: it fails.
            ok = not c.attrs.get("near_dependent", False)
            detail = f"{detail}; {note}" + (" (dependent by construction)" if ok else
                                            f" (near-dependent basis: largest cut eigenvalue "
                                            f"{c.attrs.get('cut_eigenvalue_max', 0.0):.2g} of the largest)")
        elif res["method"] == "exact" and not c.attrs.get("exact", True):
            detail += f"; error bound {c.attrs['relative_error_bound']:.2g} of the values (not called exact)"
        checks.append(Check(f"decomposition {site}", ok, detail))
    return checks
