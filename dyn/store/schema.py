"""The on-disk schema of a dyn run: one zarr v3 store, readable by plain xarray.

Layout (every dimension has a coordinate of the same name)::

    /                       attrs: dyn_schema_version, dyn_version, created, libraries, config, seed, setup,
                                   status, last_step, n_recorded, sites, chunk_steps, ...
      step(step)            int64, recorded optimizer steps (0 = initialisation)
      loss(step), ...       float64, scalars logged with Recorder.log
    /<site>                 one group per site (e.g. h, g)
      step(step), neuron(neuron), sample(sample), signal(signal), feature(feature), basis(basis), basis_dual
      signal_inner(step, neuron, signal)   float32   ⟨w_r(t), μ_k⟩
      noise_inner(step, neuron, sample)    float32   ⟨w_r(t), ξ_i⟩
      <extra>_inner(step, neuron, <dim>)   float32   user probe sets
      weight_change_sq(step, neuron, stat) float32   ‖w_r(t) − w_r(0)‖² (sites with track_change=True)
      label(sample)                        labels of the noise patches (when given)
      gram(basis, basis_dual)              float64   Gram matrix of (μ_1..μ_K, ξ_1..ξ_n), for the γ/ρ solve; only
                                                     when K + n ≤ d (site attr basis_store = "gram")
      signal_vectors(signal, feature), noise_vectors(sample, feature)   the probes (when stored, and always when
                                                     K + n > d: the solve's input instead of the Gram matrix,
                                                     basis_store = "vectors"; stores of before keep their gram)
      weight_init(neuron, feature), weight_final(neuron, feature)       (when stored)
    /_checkpoint/slot_<k>   state to resume training (see :mod:`dyn.store.checkpoint`); not in the consolidated
                            metadata, so readers of the recording do not see it

Schema versions: **2** (this one) commits through the consolidated metadata in the root ``zarr.json``, which
always describes exactly the written steps, and writes every chunk (:mod:`dyn.store.writer`). **1** was
unconsolidated while running, with arrays allocated ahead (unwritten steps hold ``step = -1``) and chunks of
fill values left out; :func:`dyn.store.open_run` still reads it (trimmed to the written steps).
Chunk keys are not part of the schema (every zarr reader follows an array's ``chunk_key_encoding``): arrays dyn
creates use ``"."`` (``c.0.1``, :data:`dyn.store.v3.CHUNK_SEPARATOR`), those of earlier stores ``"/"`` and keep it.

Nothing here knows which paper or model a run came from: a site is a weight matrix and its probes.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import StoreError

__all__ = ["basis_uses_gram", "SCHEMA_VERSION", "STATUSES", "STEP_VARS", "RESERVED_DIMS", "CHANGE_VAR", "CHANGE_DIM", "site_arrays",
           "validate_tree"]

SCHEMA_VERSION = 2
STATUSES = ("running", "complete", "diverged", "interrupted")
#: Per-step variables every site has, with their dimensions.
STEP_VARS = {"signal_inner": ("step", "neuron", "signal"), "noise_inner": ("step", "neuron", "sample")}
#: Per-step ``‖w_r(t) − w_r(0)‖²`` of a site recorded with ``track_change=True``, and its length-1 dimension.
CHANGE_VAR, CHANGE_DIM = "weight_change_sq", "stat"
#: Dimension names a user's extra probe set may not use.
RESERVED_DIMS = ("step", "neuron", "signal", "feature", "basis", "basis_dual", CHANGE_DIM)


def site_arrays(
    *,
    neurons: int,
    signal_names: list[str],
    signals: np.ndarray,
    noise: np.ndarray,
    labels: np.ndarray | None,
    extra: Mapping[str, tuple[str, np.ndarray]],
    weight: np.ndarray | None,
    store_probes: bool,
    step_dims: Mapping[str, str],
    coords: Mapping[str, tuple[str, np.ndarray]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a site group holds besides the per-step data, from host arrays.

    Parameters
    ----------
    neurons : number of neurons (rows of the weight).
    signal_names : names of the signal vectors (the ``signal`` coordinate).
    signals, noise : ``(signal, feature)`` and ``(sample, feature)`` probe vectors.
    labels : ``(sample,)`` labels or None.
    extra : extra probe sets ``name -> (dim, (rows, feature) vectors)``.
    weight : initial weights ``(neuron, feature)`` or None (not stored).
    store_probes : store the probe vectors themselves.
    step_dims : per-step variable ``name -> its probe dimension``.
    coords : extra coordinates ``name -> (dim, values)``: a dimension's own coordinate when ``name == dim`` (a
        per-step variable's extra dimension), else stored as ``name(dim)`` (e.g. conv patch positions).
    attrs : extra attributes of the site group.

    Returns
    -------
    dict
        ``coords``, ``static`` (name -> (dims, values)), ``step_vars`` (name -> ("neuron", dim)) and ``attrs``.
    """
    d = signals.shape[1]
    more = dict(coords or {})
    coords: dict[str, np.ndarray] = {
        "neuron": np.arange(neurons),
        "signal": np.array(signal_names),
        "sample": np.arange(noise.shape[0]),
        "feature": np.arange(d),
    }
    for dim, vecs in extra.values():
        coords.setdefault(dim, np.arange(vecs.shape[0]))
    for name, (dim, values) in more.items():
        if name == dim:
            coords[dim] = np.asarray(values)
    static: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    # The γ/ρ solve needs the Gram matrix (p², small bases) or the probe vectors (p·d): whichever is smaller.
    # With more probes than features (a user's conv layer: 10⁵ patches of 9 pixels) the vectors are stored
    # instead of the Gram matrix, even with store_probes=False, and the solve works on the feature side (QR).
    use_gram = basis_uses_gram(len(signal_names) + noise.shape[0], d)
    if use_gram:
        basis_names = [f"signal:{k}" for k in signal_names] + [f"sample:{i}" for i in range(noise.shape[0])]
        coords["basis"] = np.array(basis_names)
        coords["basis_dual"] = np.array(basis_names)
        static["gram"] = (("basis", "basis_dual"), _gram(np.concatenate([signals, noise]).astype(np.float64)))
    if labels is not None:
        static["label"] = (("sample",), labels)
    if store_probes or not use_gram:
        static["signal_vectors"] = (("signal", "feature"), signals)
        static["noise_vectors"] = (("sample", "feature"), noise)
    if store_probes:
        for ename, (dim, vecs) in extra.items():
            static[f"{ename}_vectors"] = ((dim, "feature"), vecs)
    if weight is not None:
        static["weight_init"] = (("neuron", "feature"), weight)
    for name, (dim, values) in more.items():
        if name != dim:
            static[name] = ((dim,), np.asarray(values))
    return {
        "coords": coords,
        "static": static,
        "step_vars": {var: ("neuron", dim) for var, dim in step_dims.items()},
        "attrs": {"neurons": neurons, "features": d, "signals": list(signal_names),
                  "basis_store": "gram" if use_gram else "vectors", **dict(attrs or {})},
    }


def basis_uses_gram(n_basis: int, n_features: int) -> bool:
    """Whether a site of ``n_basis`` probes in ``n_features`` dimensions stores its Gram matrix (``n_basis ≤
    n_features``: it is no larger than the probe vectors) rather than only the probe vectors."""
    return n_basis <= n_features


_BLAS: list[Any] = []  # threadpoolctl's controller, made once (it inspects the loaded libraries: ~10 ms)


def _gram(basis: np.ndarray) -> np.ndarray:
    """``basis @ basis.T`` on one BLAS thread: for these small products, BLAS's thread pool costs more than the
    arithmetic (10-150 ms instead of ~1.5 ms at paper scale when the cores are busy, e.g. with a training loop)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController  # installed with scikit-learn, a dependency
            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    if _BLAS[0] is None or basis.shape[0] * basis.shape[1] > 4_000_000:  # big: the threads pay off
        return basis @ basis.T
    with _BLAS[0].limit(limits=1, user_api="blas"):
        return basis @ basis.T


def _expected_kind(name: str, dims: tuple[str, ...], root: bool) -> tuple[str, str]:
    """The data type the schema fixes for a variable: ``(numpy dtype or kind, how to say it)``."""
    if name in ("step", "neuron", "sample", "feature"):
        return "int64", "int64"
    if dims[:1] == ("step",):
        return ("float64", "float64") if root else ("float32", "float32")
    if name == "gram":
        return "float64", "float64"
    if name in ("weight_init", "weight_final") or name.endswith("_vectors"):
        return "f", "a floating-point type"
    return "", ""


def _check_dtypes(p: Any, where: str, ds: Any, root: bool) -> None:
    """Refuse variables whose data type differs from the schema's (e.g. edited in their metadata): their chunks
    would otherwise be decoded as something they are not."""
    for name, var in ds.variables.items():
        expected, said = _expected_kind(str(name), var.dims, root)
        dtype = np.dtype(var.dtype)
        if expected and not (dtype.kind == expected if len(expected) == 1 else dtype == np.dtype(expected)):
            raise StoreError(f"{p}: {where}{name} has data type {dtype}, expected {said}")


def validate_tree(p: Any, tree: Any, attrs: Mapping[str, Any]) -> None:
    """Check an opened run tree against the schema; a one-line :class:`StoreError` names what is wrong."""
    if attrs.get("status") not in STATUSES:
        raise StoreError(f"{p}: unknown status {attrs.get('status')!r}")
    if "step" not in tree.ds.variables:
        raise StoreError(f"{p}: missing root variable 'step'")
    _check_dtypes(p, "", tree.ds, root=True)
    sites = attrs.get("sites")
    if not isinstance(sites, list) or not sites:
        raise StoreError(f"{p}: missing or empty 'sites' attribute")
    for site in sites:
        if site not in tree.children:
            raise StoreError(f"{p}: missing site group '{site}'")
        ds = tree[site].ds
        _check_dtypes(p, f"{site}/", ds, root=False)
        for var, dims in STEP_VARS.items():
            if var not in ds.variables:
                raise StoreError(f"{p}: site '{site}' is missing variable '{var}'")
            if ds[var].dims != dims:
                raise StoreError(f"{p}: {site}/{var} has dims {ds[var].dims}, expected {dims}")
        for dim in ds.dims:
            if dim not in tree[site].coords:
                raise StoreError(f"{p}: site '{site}' has no coordinate for dimension '{dim}'")
        if ds.sizes["step"] != tree.sizes["step"]:
            raise StoreError(f"{p}: site '{site}' has {ds.sizes['step']} steps, root has {tree.sizes['step']}")
