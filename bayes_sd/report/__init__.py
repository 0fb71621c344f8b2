"""The posterior report (HTML + Markdown, :mod:`.document`) and its figures (:mod:`.plots`)."""

from bayes_sd.report.document import SECTIONS, write_report
from bayes_sd.report.plots import (
    plot_baselines,
    plot_data_overview,
    plot_diagnostics,
    plot_latency_vs_load,
    plot_ppc,
    plot_recommendations,
    plot_saturation,
    plot_shrinkage,
    plot_speedup,
)

__all__ = ["SECTIONS", "write_report", "plot_data_overview", "plot_diagnostics", "plot_ppc", "plot_latency_vs_load",
           "plot_speedup", "plot_saturation", "plot_shrinkage", "plot_recommendations", "plot_baselines"]
