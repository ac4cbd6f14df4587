"""The live view: follow run stores while they are being written, in a terminal, a loopback web page or a notebook.

A :class:`Follower` reads one store by plain file reads (no lock, no write, nothing the writer waits for): the root
attributes from ``zarr.json`` and each group as its own :class:`xarray.Dataset`, because while a run is being written
the groups can briefly hold different numbers of steps. It keeps only the steps of the shortest aligned prefix of set
(``>= 0``), increasing ``step`` coordinates over all groups, and reduces only the steps that are new since its last
poll, so a poll costs the new chunks, never the whole store. What a poll cannot read yet (a chunk being replaced, a
group not created yet) is reported in ``note`` and retried on the next poll; it never raises.

Per site it shows the raw inner products (max |⟨w_r, μ_k⟩|, max and a quantile of ⟨w_r, ξ_i⟩) and, as soon as the
site's Gram matrix can be factorised, the exact coefficients (max |γ|, max and a quantile of ρ). The regime so far
comes from the theory registered for the run's setup, when one applies.

Entry points: :func:`watch` (``dyn watch``: terminal and ``--serve``), :func:`serve` (the page alone) and
:func:`watch_notebook` (Jupyter).
"""

from __future__ import annotations

import errno
import html
import json
import math
import os
import shlex
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import numpy as np
import xarray as xr

from ..analysis.coefficients import coefficients
from ..errors import ConfigError, DynError, StoreError, option
from ..store import check_codecs, open_run, read_attrs, run_status
from ..store.reader import damaged_chunk

__all__ = ["Follower", "watch", "serve", "watch_notebook", "format_text", "render_html"]

#: statuses after which a store no longer changes ("stale": marked running, but its writer is gone, see
#: :func:`dyn.store.run_status`)
FINAL = ("complete", "diverged", "interrupted", "stale", "damaged")
#: at most this many points per curve in a snapshot (the page and the notebook draw these)
MAX_POINTS = 400


def _finite(x: Any) -> float | None:
    """A JSON-safe float: None for NaN/inf/missing."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Follower:
    """Follow one run store by plain reads and summarise it at each :meth:`poll`.

    Parameters
    ----------
    path : str or Path
        The run store (it may not exist yet: the poll then says so).
    quantile : float
        The quantile over (neuron, sample) shown beside the maxima of noise inner products and ρ.
    regime_every : float
        Seconds between two evaluations of the theory's regime (it decomposes the whole run so far).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> snap = Follower(path).poll()
    >>> snap["status"], snap["step"], snap["sites"]["h"]["kind"]
    ('complete', 5, 'exact')
    """

    def __init__(self, path: str | os.PathLike, *, quantile: float = 0.9, regime_every: float = 10.0):
        self.path = Path(path)
        self.quantile = quantile
        self.regime_every = regime_every
        self._checked = False
        self._history: dict[str, list[float]] = {"step": [], "loss": []}
        self._site_info: dict[str, dict[str, Any]] = {}
        self._seen: list[tuple[float, int]] = []  # (monotonic time, last step) of past polls
        self._regime: dict[str, Any] | None = None
        self._regime_note = ""
        self._regime_at = -math.inf
        self._regime_final = False  # evaluated on the finished run: nothing changes any more
        self._last: dict[str, Any] | None = None
        self._damage: str | None = None  # a finished store that cannot be read whole says why, once checked
        self._damage_checked = False

    # -- reading -----------------------------------------------------------------------------------------
    def _open(self, group: str | None) -> xr.Dataset:
        # The root's consolidated metadata is the store's commit record (schema 2): one consistent length for
        # every group. The arrays' own zarr.json files lag it while the run writes. Schema-1 stores have no
        # consolidated metadata while running, and zarr falls back to the arrays' own files.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xr.open_dataset(self.path, group=group, engine="zarr", consolidated=None, chunks={})

    @staticmethod
    def _aligned(datasets: Iterable[xr.Dataset]) -> int:
        """Length of the longest prefix of set, increasing step coordinates common to all ``datasets``."""
        counts = []
        for ds in datasets:
            if "step" not in ds.variables:
                continue
            values = np.asarray(ds["step"].values)
            bad = np.flatnonzero(values < 0)
            n = int(bad[0]) if bad.size else len(values)
            dec = np.flatnonzero(np.diff(values[:n]) <= 0)
            counts.append(int(dec[0]) + 1 if dec.size else n)
        return min(counts) if counts else 0

    def _read(self) -> tuple[dict[str, Any], xr.Dataset, dict[str, xr.Dataset], int]:
        attrs = dict(read_attrs(self.path))
        attrs["status"] = run_status(self.path, attrs)  # "stale" when the writer is gone: nothing will change
        if not self._checked:
            check_codecs(self.path)  # refuses codecs that could run code, once per store (JSON reads only)
            self._checked = True
        sites = [str(s) for s in attrs.get("sites") or []]
        root = self._open(None)
        groups = {s: self._open(s) for s in sites}
        n = self._aligned([root, *groups.values()])
        return attrs, root, groups, n

    # -- reducing ----------------------------------------------------------------------------------------
    def _site_block(self, name: str, ds: xr.Dataset, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-step reductions of one site over the new steps ``start:stop``."""
        block = ds.isel(step=slice(start, stop))
        q = self.quantile
        out = {
            "signal_max": abs(block["signal_inner"]).max(("neuron", "signal")),
            "noise_max": block["noise_inner"].max(("neuron", "sample")),
            "noise_q": block["noise_inner"].quantile(q, ("neuron", "sample")),
        }
        info = self._site_info.setdefault(name, {"kind": "raw", "why": ""})
        if info["kind"] != "never":
            try:
                index = ([0] if start > 0 else []) + list(range(start, stop))
                c = coefficients(ds.isel(step=index)).isel(step=slice(1 if start > 0 else 0, None))
                out["gamma_max"] = abs(c["gamma"]).max(("neuron", "signal"))
                out["rho_max"] = c["rho"].max(("neuron", "sample"))
                out["rho_q"] = c["rho"].quantile(q, ("neuron", "sample"))
                info["kind"] = "exact"
            except (StoreError, KeyError) as exc:  # no Gram matrix or a dependent basis: raw inner products only
                info.update(kind="never", why=str(exc))
        computed = xr.Dataset(out).compute()
        return {k: np.asarray(v.values, dtype=np.float64) for k, v in computed.items()}

    def _extend(self, attrs: dict[str, Any], root: xr.Dataset, groups: dict[str, xr.Dataset], n: int) -> None:
        start = len(self._history["step"])
        if n <= start:
            return
        steps = np.asarray(root["step"].values[start:n] if "step" in root.variables else np.arange(start, n))
        blocks = {name: self._site_block(name, ds, start, n) for name, ds in groups.items()}
        loss = (np.asarray(root["loss"].isel(step=slice(start, n)).values, dtype=np.float64)
                if "loss" in root.data_vars else np.full(n - start, np.nan))
        self._history["step"] += [int(s) for s in steps]
        self._history["loss"] += [float(v) for v in loss]
        for name, block in blocks.items():
            for key, values in block.items():
                self._history.setdefault(f"{name}.{key}", [math.nan] * start)
                self._history[f"{name}.{key}"] += [float(v) for v in values]

    def _regime_so_far(self, attrs: dict[str, Any], root: xr.Dataset, groups: dict[str, xr.Dataset],
                       n: int) -> None:
        now = time.monotonic()
        final = attrs.get("status") in FINAL
        due = now - self._regime_at >= self.regime_every or (final and not self._regime_final)
        if n < 2 or not due or self._regime_final:
            return
        self._regime_final = final
        self._regime_at = now
        from ..analysis.run import Run
        from ..theory.base import theory_for

        try:
            tree = xr.DataTree.from_dict({"/": root.isel(step=slice(0, n)),
                                          **{s: ds.isel(step=slice(0, n)) for s, ds in groups.items()}})
            tree.attrs.update(attrs)
            run = Run(tree)
            theory = theory_for(run)
            reason = theory.applies_to(run)
            if reason:
                self._regime, self._regime_note = None, f"theory {theory.name} does not apply: {reason}"
            else:
                self._regime = {k: (_finite(v) if isinstance(v, float) else v)
                                for k, v in theory.regime(run).items()}
                self._regime_note = f"theory {theory.name}, " + ("final" if final else "steps so far")
        except DynError as exc:
            self._regime, self._regime_note = None, str(exc)
        except Exception as exc:  # a live view never stops on a partial run; say what failed
            self._regime, self._regime_note = None, f"regime not available yet ({type(exc).__name__}: {exc})"

    # -- the snapshot ------------------------------------------------------------------------------------
    def poll(self) -> dict[str, Any]:
        """Read what is new in the store and return a JSON-serialisable snapshot of the run so far.

        Returns
        -------
        dict
            ``store``, ``name``, ``status``, ``steps_recorded``, ``step`` (the last recorded step),
            ``total_steps`` (from the config's ``steps``, or None), ``steps_per_s``, ``eta_s``, ``loss``,
            ``sites`` (per site: ``kind`` "raw" or "exact" and the latest maxima/quantiles), ``regime``,
            ``regime_note``, ``note`` (why the last read saw nothing new, if so) and ``history`` (curves, at
            most :data:`MAX_POINTS` points each).
        """
        note = ""
        attrs: dict[str, Any] = {}
        try:
            attrs, root, groups, n = self._read()
            if attrs.get("status") in FINAL and not self._damage_checked:
                self._damage_checked = True  # nothing changes any more: read it whole once (missing, corrupt chunks)
                self._damage = damage(self.path)
            if self._damage is None:
                self._extend(attrs, root, groups, n)
                self._regime_so_far(attrs, root, groups, n)
        except (DynError, OSError, ValueError, KeyError, RuntimeError) as exc:
            if self._last is not None and "not exist" not in str(exc):
                note = f"read skipped, retrying ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            else:
                note = f"waiting for the store ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        except Exception as exc:  # zarr raises its own types for a half-written chunk: never crash, retry
            note = f"read skipped, retrying ({type(exc).__name__})"
        snap = self._snapshot(attrs, note)
        self._last = snap
        return snap

    def _snapshot(self, attrs: dict[str, Any], note: str) -> dict[str, Any]:
        h = self._history
        last_step = h["step"][-1] if h["step"] else None
        now = time.monotonic()
        if last_step is not None and (not self._seen or self._seen[-1][1] != last_step):
            self._seen.append((now, last_step))
            self._seen = self._seen[-20:]
        rate = None
        if len(self._seen) >= 2 and self._seen[-1][0] > self._seen[0][0]:
            rate = (self._seen[-1][1] - self._seen[0][1]) / (self._seen[-1][0] - self._seen[0][0])
        config = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
        total = config.get("steps") if isinstance(config.get("steps"), int) else None
        status = attrs.get("status") or (self._last or {}).get("status") or "not started"
        if self._damage is not None:
            status, note = "damaged", self._damage
        resume = None
        if status in ("stale", "interrupted") and attrs.get("setup"):
            resume = f"dyn run --resume {shlex.quote(str(self.path))}"
        eta = None
        if rate and total is not None and last_step is not None and status == "running":
            eta = max(total - last_step, 0) / rate
        sites = {}
        for name, info in self._site_info.items():
            latest = {key.split(".", 1)[1]: _finite(values[-1]) for key, values in h.items()
                      if key.startswith(name + ".") and values}
            sites[name] = {"kind": "exact" if info["kind"] == "exact" else "raw", "why_raw": info["why"], **latest}
        stride = max(1, math.ceil(len(h["step"]) / MAX_POINTS))
        keep = list(range(0, len(h["step"]), stride))
        if h["step"] and keep[-1] != len(h["step"]) - 1:
            keep.append(len(h["step"]) - 1)
        history = {key: [(_finite(values[i]) if key != "step" else values[i]) for i in keep] for key, values in h.items()}
        return {
            "store": str(self.path), "name": self.path.name.removesuffix(".zarr"), "status": status,
            "setup": attrs.get("setup"), "seed": attrs.get("seed"), "quantile": self.quantile,
            "steps_recorded": len(h["step"]), "step": last_step, "total_steps": total,
            "steps_per_s": _finite(rate), "eta_s": _finite(eta),
            "loss": _finite(h["loss"][-1]) if h["loss"] else None,
            "sites": sites, "regime": self._regime, "regime_note": self._regime_note, "note": note, "resume": resume,
            "history": history,
        }


# -- text ------------------------------------------------------------------------------------------------
def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_text(snap: dict[str, Any]) -> str:
    """A few lines of text for one snapshot (what the terminal shows).

    Examples
    --------
    >>> print(format_text({"store": "r.zarr", "status": "running", "step": 10, "total_steps": 100,
    ...                    "steps_per_s": 5.0, "eta_s": 18.0, "loss": 0.5, "sites": {}, "regime": None,
    ...                    "regime_note": "", "note": "", "quantile": 0.9}))
    r.zarr  [running]  step 10/100 (10%)  5 steps/s  ETA 0m18s  loss 0.5
    """
    total = snap.get("total_steps")
    step = snap.get("step")
    where = "no step yet" if step is None else f"step {step}" + (
        f"/{total} ({100 * step / total:.0f}%)" if total else "")
    rate = snap.get("steps_per_s")
    lines = [f"{snap['store']}  [{snap['status']}]  {where}  {_num(rate)} steps/s  ETA {_duration(snap.get('eta_s'))}"
             f"  loss {_num(snap.get('loss'))}"]
    q = int(round(100 * snap.get("quantile", 0.9)))
    for name, s in snap.get("sites", {}).items():
        raw = (f"max|⟨w,μ⟩| {_num(s.get('signal_max'))}  max⟨w,ξ⟩ {_num(s.get('noise_max'))}  "
               f"q{q}⟨w,ξ⟩ {_num(s.get('noise_q'))}")
        exact = (f"max|γ| {_num(s.get('gamma_max'))}  max ρ {_num(s.get('rho_max'))}  q{q} ρ {_num(s.get('rho_q'))}  |  "
                 if s.get("kind") == "exact" else "(raw inner products: no decomposition)  ")
        lines.append(f"  site {name}: {exact}{raw}")
    regime = snap.get("regime")
    if regime:
        so_far = "regime" if snap.get("status") in FINAL else "regime so far"
        lines.append(f"  {so_far}: {regime.get('observed_winner')} at step {regime.get('at_step')}"
                     f" (predicted: {regime.get('predicted_winner')}; {regime.get('condition')})")
    elif snap.get("regime_note"):
        lines.append(f"  regime: {snap['regime_note']}")
    if snap.get("status") == "stale":
        lines.append("  stopped: marked running, but no process is writing it any more (killed, or the disk filled)"
                     + (f"; resume with `{snap['resume']}`" if snap.get("resume") else ""))
    elif snap.get("resume"):
        lines.append(f"  resume with `{snap['resume']}`")
    if snap.get("note"):
        lines.append(f"  note: {snap['note']}")
    return "\n".join(lines)


def _write(out: IO[str], text: str) -> None:
    try:
        out.write(text)
    except UnicodeEncodeError:  # a terminal without UTF-8: Greek letters become '?'
        enc = getattr(out, "encoding", None) or "ascii"
        out.write(text.encode(enc, "replace").decode(enc))
    out.flush()


# -- the page --------------------------------------------------------------------------------------------
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dyn watch</title><link rel="icon" href="data:,">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
.run{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin-bottom:1em}
.head{font-weight:600} .note{color:#a60} table{border-collapse:collapse;margin:.4em 0}
td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #eee} th:first-child,td:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figcaption{font-size:12px;color:#555}
svg{background:#fafafa;border:1px solid #ddd}
</style></head><body>
<h1>dyn watch</h1><p id="meta">connecting…</p><div id="runs"></div>
<script>
"use strict";
const INTERVAL = __INTERVAL__;
const COLORS = ["#1f77b4","#d62728","#2ca02c","#9467bd","#ff7f0e","#8c564b"];
function fmt(v){return (v===null||v===undefined)?"–":Number(v).toPrecision(3);}
function dur(s){if(s===null||s===undefined)return "–";s=Math.round(s);
  return s>=3600?Math.floor(s/3600)+"h"+String(Math.floor(s%3600/60)).padStart(2,"0")+"m":Math.floor(s/60)+"m"+String(s%60).padStart(2,"0")+"s";}
function esc(t){return String(t).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));}
function chart(title, x, series, logy){
  const W=360,H=200,L=48,B=24,T=8,R=8; let pts=[];
  for(const s of series) for(let i=0;i<x.length;i++){const v=s.y[i]; if(v!==null&&(!logy||v>0)) pts.push(v);}
  let svg='<figure><figcaption>'+esc(title)+(logy?' (log scale)':'')+'</figcaption><svg width="'+W+'" height="'+H+'">';
  if(!pts.length||x.length<1) return svg+'<text x="60" y="100">no data yet</text></svg></figure>';
  const f=logy?Math.log10:(v=>v); let lo=Math.min(...pts.map(f)),hi=Math.max(...pts.map(f)); if(hi===lo){hi+=1;lo-=1;}
  const x0=x[0],x1=Math.max(x[x.length-1],x0+1);
  const px=v=>L+(W-L-R)*(v-x0)/(x1-x0), py=v=>T+(H-T-B)*(1-(f(v)-lo)/(hi-lo));
  svg+='<line x1="'+L+'" y1="'+(H-B)+'" x2="'+(W-R)+'" y2="'+(H-B)+'" stroke="#999"/>';
  svg+='<text x="'+L+'" y="'+(H-6)+'" font-size="11">step '+x0+'</text><text x="'+(W-R)+'" y="'+(H-6)+'" font-size="11" text-anchor="end">'+x[x.length-1]+'</text>';
  svg+='<text x="2" y="'+(T+10)+'" font-size="11">'+fmt(logy?Math.pow(10,hi):hi)+'</text><text x="2" y="'+(H-B)+'" font-size="11">'+fmt(logy?Math.pow(10,lo):lo)+'</text>';
  series.forEach((s,k)=>{let d="";for(let i=0;i<x.length;i++){const v=s.y[i]; if(v===null||(logy&&v<=0))continue; d+=(d?"L":"M")+px(x[i]).toFixed(1)+","+py(v).toFixed(1);}
    svg+='<path d="'+d+'" fill="none" stroke="'+COLORS[k%COLORS.length]+'" stroke-width="1.5"><title>'+esc(s.label)+'</title></path>';
    svg+='<text x="'+(L+6)+'" y="'+(T+12+12*k)+'" font-size="11" fill="'+COLORS[k%COLORS.length]+'">'+esc(s.label)+'</text>';});
  return svg+'</svg></figure>';
}
function render(data){
  document.getElementById("meta").textContent="updated "+new Date().toLocaleTimeString()+" · refresh every "+INTERVAL/1000+" s";
  let out="";
  for(const r of data.runs){
    const h=r.history, q=Math.round(100*r.quantile);
    out+='<div class="run" data-store="'+esc(r.store)+'"><div class="head">'+esc(r.store)+' ['+esc(r.status)+']</div>';
    out+='<div>step <span class="step">'+(r.step===null?"–":r.step)+'</span>'+(r.total_steps?' / '+r.total_steps:'')+
      ' · '+fmt(r.steps_per_s)+' steps/s · ETA '+dur(r.eta_s)+' · loss '+fmt(r.loss)+'</div>';
    out+='<table><tr><th>site</th><th>kind</th><th>max |γ|</th><th>max ρ</th><th>q'+q+' ρ</th><th>max |⟨w,μ⟩|</th><th>max ⟨w,ξ⟩</th><th>q'+q+' ⟨w,ξ⟩</th></tr>';
    for(const [s,v] of Object.entries(r.sites)) out+='<tr><td>'+esc(s)+'</td><td>'+v.kind+'</td><td>'+fmt(v.gamma_max)+'</td><td>'+fmt(v.rho_max)+'</td><td>'+fmt(v.rho_q)+'</td><td>'+fmt(v.signal_max)+'</td><td>'+fmt(v.noise_max)+'</td><td>'+fmt(v.noise_q)+'</td></tr>';
    out+='</table>';
    if(r.regime) out+='<div>regime so far: <b>'+esc(r.regime.observed_winner)+'</b> at step '+r.regime.at_step+' (predicted: '+esc(r.regime.predicted_winner)+'; '+esc(r.regime.condition)+')</div>';
    else if(r.regime_note) out+='<div>regime: '+esc(r.regime_note)+'</div>';
    if(r.note) out+='<div class="note">'+esc(r.note)+'</div>';
    out+='<div class="charts">'+chart("loss",h.step,[{label:"loss",y:h.loss}],true);
    for(const s of Object.keys(r.sites)){
      const ser=[]; if(r.sites[s].kind==="exact"){ser.push({label:"max |γ| ("+s+")",y:h[s+".gamma_max"]});ser.push({label:"max ρ ("+s+")",y:h[s+".rho_max"]});}
      else {ser.push({label:"max |⟨w,μ⟩| ("+s+")",y:h[s+".signal_max"]});ser.push({label:"max ⟨w,ξ⟩ ("+s+")",y:h[s+".noise_max"]});}
      out+=chart("site "+s+": signal vs noise",h.step,ser,true);}
    out+='</div></div>';
  }
  document.getElementById("runs").innerHTML=out;
}
async function tick(){
  try{const r=await fetch("data.json",{cache:"no-store"}); render(await r.json());}
  catch(e){document.getElementById("meta").textContent="watch server not reachable ("+e+"); retrying";}
  setTimeout(tick,INTERVAL);
}
tick();
</script></body></html>
"""


class _State:
    """The latest snapshots, shared between the polling loop and the HTTP handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.payload = b'{"runs": []}'

    def set(self, snaps: list[dict[str, Any]]) -> None:
        data = json.dumps({"runs": snaps, "time": time.time()}, allow_nan=False, ensure_ascii=False).encode()
        with self.lock:
            self.payload = data

    def get(self) -> bytes:
        with self.lock:
            return self.payload


def _handler(state: _State, page: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                body, kind = page, "text/html; charset=utf-8"
            elif path == "/data.json":
                body, kind = state.get(), "application/json"
            elif path == "/favicon.ico":
                self.send_response(204)
                self.end_headers()
                return
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # no access log on the terminal view
            pass

    return Handler


def serve(state: _State, *, port: int = 0, interval: float = 2.0) -> ThreadingHTTPServer:
    """Start the page and its JSON endpoint on ``127.0.0.1:port`` (0: a free port) in a daemon thread.

    The server answers from ``state`` (filled by the polling loop): requests never read a store. Stop it with
    ``server.shutdown(); server.server_close()``.

    Raises
    ------
    ConfigError
        The port is out of range, already in use or privileged (one line naming it).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0 to 65535, got {port} (0 picks a free one: --serve 0)")
    page = _PAGE.replace("__INTERVAL__", str(int(interval * 1000))).encode()
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state, page))
    except OSError as exc:
        why = {errno.EADDRINUSE: "is already in use", errno.EACCES: "needs privileges (ports below 1024)"}.get(
            exc.errno, f"cannot be opened ({exc.strerror or exc})")
        raise ConfigError(f"port {port} on 127.0.0.1 {why}; choose another, or --serve 0 for a free one") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="dyn-watch-http", daemon=True).start()
    return server


def _check_store(path: Path) -> None:
    """Refuse a path that is not a dyn store (a typo would otherwise be waited for forever). An empty folder
    passes: a run creates its folder just before the store's first file."""
    if not path.exists():
        raise StoreError(f"{path} does not exist (a typo? `dyn watch --wait` waits for a run that has not "
                         "started yet)")
    if path.is_dir() and not any(path.iterdir()):
        return
    read_attrs(path)


def damage(path: str | os.PathLike) -> str | None:
    """Why a finished run store cannot be read whole (a chunk file missing, or failing its checksum), or None."""
    try:
        open_run(path)  # refuses a missing chunk in the range the commit record shows
        found = damaged_chunk(path)
    except StoreError as exc:
        return str(exc).splitlines()[0]
    return f"{path}: {found}" if found else None


def check_options(interval: float, quantile: float) -> None:
    """One-line :class:`~dyn.ConfigError` for a poll interval or quantile that cannot be used (before anything is
    read or served).

    Examples
    --------
    >>> check_options(2.0, 0.9)
    >>> check_options(2.0, float("nan"))
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: quantile must be a number in [0, 1], got nan
    """
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"{option('quantile', '--quantile')} must be a number in [0, 1], got {quantile!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (math.isfinite(interval)
                                                                                    and interval > 0):
        raise ConfigError(f"{option('interval', '--interval')} must be a positive number of seconds, got {interval!r}")


def watch(stores: Sequence[str | os.PathLike], *, interval: float = 2.0, once: bool = False, as_json: bool = False,
          port: int | None = None, quantile: float = 0.9, out: IO[str] | None = None,
          max_polls: int | None = None, wait: bool = False) -> int:
    """Follow run stores until they have all finished (or Ctrl-C), printing a refreshed summary.

    Parameters
    ----------
    stores : paths of run stores; each must exist, unless ``wait``.
    interval : seconds between polls.
    once : print one snapshot and return (with ``wait``: once every store exists).
    as_json : print one JSON line per poll (all stores) instead of text.
    port : also serve the live page on ``http://127.0.0.1:PORT/`` (0 picks a free port; the URL is printed);
        the page keeps being served after the runs finish, until Ctrl-C.
    quantile : quantile shown beside the maxima.
    out : where to write (default ``sys.stdout``); on a terminal the view is redrawn in place.
    max_polls : stop after this many polls (tests).
    wait : wait for stores that do not exist yet (a run about to start) instead of refusing them.

    Returns
    -------
    int
        0, or 1 when a store is damaged (a chunk missing or failing its checksum: ``verify`` says which).

    Raises
    ------
    StoreError
        Without ``wait``: a store that does not exist (a typo?) or is not a dyn store, before anything is shown.
    ConfigError
        The ``port`` cannot be served, or ``interval`` / ``quantile`` cannot be used.
    """
    check_options(interval, quantile)
    if not wait:
        for path in stores:
            _check_store(Path(path))
    out = out or sys.stdout
    followers = [Follower(p, quantile=quantile) for p in stores]
    state = _State()
    server = serve(state, port=port, interval=interval) if port is not None else None
    redraw = not as_json and not once and hasattr(out, "isatty") and out.isatty()
    polls, shown = 0, None
    try:
        if server is not None:
            _write(out, f"dyn watch: live page on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)\n")
        while True:
            snaps = [f.poll() for f in followers]
            state.set(snaps)
            polls += 1
            if as_json:
                _write(out, json.dumps({"runs": [{k: v for k, v in s.items() if k != "history"} for s in snaps]},
                                       allow_nan=False, ensure_ascii=False) + "\n")
            else:
                text = "\n".join(format_text(s) for s in snaps)
                if redraw:
                    _write(out, "\x1b[H\x1b[J" + text + "\n")
                elif text != shown:  # a log or a pipe gets a block only when something changed
                    _write(out, text + ("\n" if once else "\n\n"))
                shown = text
            finished = all(s["status"] in FINAL for s in snaps)
            waiting = wait and any(s["status"] == "not started" for s in snaps)
            if ((once and not waiting) or (max_polls is not None and polls >= max_polls)
                    or (finished and server is None)):
                return 1 if any(s["status"] == "damaged" for s in snaps) else 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def render_html(snaps: list[dict[str, Any]]) -> str:
    """A static HTML summary of snapshots (table and inline SVG curves), as the notebook helper shows it."""
    rows = []
    for s in snaps:
        rows.append(f"<h4>{html.escape(s['store'])} [{html.escape(str(s['status']))}]</h4>"
                    f"<pre>{html.escape(format_text(s))}</pre>")
        h = s["history"]
        curves = [("loss", h.get("loss", []))]
        for name, site in s["sites"].items():
            keys = ("gamma_max", "rho_max") if site["kind"] == "exact" else ("signal_max", "noise_max")
            curves += [(f"{k} ({name})", h.get(f"{name}.{k}", [])) for k in keys]
        rows.append("".join(_svg(label, h.get("step", []), ys) for label, ys in curves))
    return "<div>" + "".join(rows) + "</div>"


def _svg(label: str, x: list[int], y: list[float | None], width: int = 240, height: int = 120) -> str:
    pts = [(a, math.log10(b)) for a, b in zip(x, y) if b is not None and b > 0]
    head = f'<svg width="{width}" height="{height}" style="background:#fafafa;margin:4px"><text x="4" y="12" ' \
           f'font-size="11">{html.escape(label)} (log)</text>'
    if len(pts) < 2:
        return head + "</svg>"
    x0, x1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    hi = hi if hi > lo else lo + 1
    d = "".join(f"{'L' if i else 'M'}{4 + (width - 8) * (a - x0) / (x1 - x0):.1f},"
                f"{16 + (height - 20) * (1 - (b - lo) / (hi - lo)):.1f}" for i, (a, b) in enumerate(pts))
    return head + f'<path d="{d}" fill="none" stroke="#1f77b4"/></svg>'


def watch_notebook(stores: Sequence[str | os.PathLike] | str | os.PathLike, *, interval: float = 2.0,
                   quantile: float = 0.9, max_polls: int | None = None) -> list[dict[str, Any]]:
    """Follow run stores inside a Jupyter notebook: one output cell, updated in place until the runs finish.

    Interrupt the kernel to stop following (the runs are not affected).

    Parameters
    ----------
    stores : one path or several.
    interval : seconds between polls.
    quantile : quantile shown beside the maxima.
    max_polls : stop after this many polls.

    Returns
    -------
    list of dict
        The last snapshots (see :meth:`Follower.poll`).
    """
    from IPython.display import HTML, display

    check_options(interval, quantile)
    paths = [stores] if isinstance(stores, (str, os.PathLike)) else list(stores)
    followers = [Follower(p, quantile=quantile) for p in paths]
    handle = display(HTML("<p>dyn watch: reading…</p>"), display_id=True)
    polls, snaps = 0, []
    try:
        while True:
            snaps = [f.poll() for f in followers]
            polls += 1
            handle.update(HTML(render_html(snaps)))
            if all(s["status"] in FINAL for s in snaps) or (max_polls is not None and polls >= max_polls):
                return snaps
            time.sleep(interval)
    except KeyboardInterrupt:
        return snaps
