"""Experiments built on everything below: reproductions of a paper's figures and tables (each setup registers its
own, :mod:`dyn.experiments.reproduce`) and parameter sweeps on Dask (:mod:`dyn.experiments.sweep`)."""
