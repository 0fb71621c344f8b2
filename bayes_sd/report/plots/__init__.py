"""Figures of a fitted :class:`~bayes_sd.model.LatencyModel`, one module per topic.

Every ``plot_*`` function takes the model (or the data it shows) first, then options
(``hdi_prob``: mass of the central interval, ``figsize``), and returns a
:class:`matplotlib.figure.Figure` that the caller owns (it is not registered with pyplot; nothing
is shown). The numbers behind a plot come from a public ``*_data`` function; pass its result as
``data=`` to reuse it (the report does, so each figure and its reading sentence share one
computation). Units are in the axis labels; synthetic data are labelled "synthetic".

Topics: :mod:`.data`, :mod:`.diagnostics`, :mod:`.ppc`, :mod:`.latency` (latency and speedup
versus load), :mod:`.saturation`, :mod:`.pooling`, :mod:`.baselines`, :mod:`.decisions`,
:mod:`.acceptance` (acceptance length versus k) and :mod:`.variants` (MoE, drafter what-if, parity).
"""

from bayes_sd.report.plots.acceptance import plot_acceptance_curve, plot_tpot_vs_k
from bayes_sd.report.plots.baselines import plot_baselines
from bayes_sd.report.plots.common import group_title
from bayes_sd.report.plots.data import plot_data_overview
from bayes_sd.report.plots.decisions import plot_recommendations
from bayes_sd.report.plots.diagnostics import diagnostics_data, plot_diagnostics
from bayes_sd.report.plots.latency import load_curves_data, load_groups, plot_latency_vs_load, plot_speedup
from bayes_sd.report.plots.pooling import plot_shrinkage, shrinkage_data
from bayes_sd.report.plots.ppc import plot_ppc, ppc_data
from bayes_sd.report.plots.saturation import plot_saturation, saturation_data
from bayes_sd.report.plots.variants import plot_parity, plot_variant_fits, plot_what_if_drafter

__all__ = ["plot_data_overview", "plot_diagnostics", "plot_ppc", "plot_latency_vs_load", "plot_speedup",
           "plot_saturation", "plot_shrinkage", "plot_recommendations", "plot_baselines", "plot_acceptance_curve",
           "plot_tpot_vs_k", "plot_variant_fits", "plot_what_if_drafter", "plot_parity", "diagnostics_data",
           "ppc_data", "load_groups", "load_curves_data", "saturation_data", "shrinkage_data", "group_title"]
