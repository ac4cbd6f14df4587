"""Figures, reports, exports and the ``.dyn`` xarray accessors: what a person looks at.

Reads runs through :mod:`dyn.analysis` and judges them through :mod:`dyn.theory` (by registry); knows no paper.
"""
