"""Mean latency per (posterior draw, condition) in numpy, from the per-draw inputs of
:class:`bayes_sd.model.predict.Draws`: the exact open-loop fixed points (infinite past saturation)
that the PyMC graph (:mod:`bayes_sd.model.build`) approximates where it must stay differentiable."""

from __future__ import annotations

import dataclasses

import numpy as np

from bayes_sd import theory
from bayes_sd.model.fit_data import COEFS

__all__ = ["latency_at", "run_latency"]


def latency_at(inputs: dict, k, tau, tau_sq, drafter_scale=1.0):
    """Mean latency (s) per (sample, condition) from the per-draw inputs of :class:`Draws`.

    Returns ``(costs, demand, latency, others, wait, capacity)``: the service costs with the
    effective verifier fixed cost (MoE coverage, roofline knee), the demand split, mean latency (inf
    past saturation, where the knee may bring saturation below ``1 / C2``), the mean number of other
    requests in service, the mean wait for a slot where the batch cap (``inputs["slots"]``) is known
    (:mod:`bayes_sd.theory.batch_cap`; 0 elsewhere, s) and the capacity (requests/s: ``1 / C2``, or the
    capped server's where the cap is known). ``k``, ``tau`` (tokens per drafting step), ``tau_sq``
    (its second moment, :func:`acceptance_second_moment`: the iteration-boundary term the fitted
    model has) and ``drafter_scale`` (a multiplier on the drafter costs d0, d1) may differ from
    the conditions' own, for what-if questions; ``inputs["draft_share"]`` (default 1) is the share of
    decode steps that carry drafts (:func:`bayes_sd.theory.per_decode_step`).
    """
    is_open, rate, conc = inputs["is_open"], inputs["rate"], inputs["concurrency"]
    slots = inputs.get("slots", np.ones_like(conc))
    has_cap = inputs.get("has_cap", np.zeros(np.shape(conc), bool))
    cv2 = inputs.get("arrival_cv2", theory.POISSON)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        costs, dem, open_piece, closed, (share, log_q, knee, r, k) = _laws(inputs, k, tau, tau_sq, drafter_scale)
        if np.any(cv2 != theory.POISSON):  # arrivals more regular (or burstier) than Poisson: two pieces
            (rate_a, shift_a), (rate_b, shift_b) = theory.open_loop_pieces(rate, cv2)
            lat_open = theory.combine_pieces(open_piece(rate_a, shift_a), open_piece(rate_b, shift_b), cv2)
        else:
            lat_open = open_piece(rate, 0.0)
        capacity = theory.saturation_rate(dem.c2)
        if np.any(has_cap):  # past the batch cap requests wait for a slot (theory.batch_cap)
            full = closed(slots) + theory.preemption_recompute(slots, costs.p1, inputs.get("recompute", 0.0))
            lat_closed = closed(np.where(has_cap, np.minimum(conc, slots), conc))
            wait = np.where(is_open, theory.queue_wait(rate, slots, full, has_cap),
                            theory.closed_wait(conc, slots, full, has_cap))
            capacity = np.where(has_cap, np.minimum(capacity, theory.cap_capacity(slots, full)), capacity)
        else:
            lat_closed, wait = closed(conc), np.zeros(np.broadcast_shapes(np.shape(lat_open), np.shape(conc)))
        service = np.where(is_open, lat_open, lat_closed)
        lat = service + wait
        others = np.where(is_open, theory.others_open(rate, service, cv2), conc - 1.0)
        others = np.where(has_cap, np.minimum(others, slots - 1.0), others)
        busy = np.where(np.isfinite(others), others, 0.0)
        v0_eff = (costs.v0 * (1.0 - share * theory.moe_untouched(log_q, k, busy))
                  * (1.0 + r * theory.knee_excess(busy, k, knee)))
    return dataclasses.replace(costs, v0=v0_eff), dem, lat, others, wait, capacity


def run_latency(inputs: dict, k, tau, tau_sq, steady, wait, capacity, n_requests, min_share: float = 0.01):
    """Mean latency (s) per (sample, condition) that an open-loop run of ``n_requests`` (condition,)
    requests measures (:func:`bayes_sd.theory.finite_run_latency`): the ``steady`` state of
    :func:`latency_at` (s; ``wait`` its wait for a slot, s) where the run reaches it, never more, and less
    near capacity, where the steady state's backlog is out of the run's reach; ``inf`` where the steady
    state is (at or past ``capacity``, requests/s, or where a knee saturates the server first), as the
    backlog then grows for the whole run and the ingest flags it saturated. Closed loops,
    conditions without ``n_requests`` and draws whose steady state holds under ``min_share`` of the
    run's requests in flight keep ``steady``."""
    rate, slots = inputs["rate"], np.where(inputs["has_cap"], inputs["slots"], np.inf)
    n = np.asarray(n_requests, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        run = inputs["is_open"] & np.isfinite(n) & (rate > 0)
        load = np.where(run, rate / capacity, 0.0)
        todo = run & (load < 1.0) & np.isfinite(steady) & (rate * steady >= min_share * n)
    out = np.array(steady, float)
    if not todo.any():
        return out
    shape = np.shape(steady)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        closed = _laws(inputs, k, tau, tau_sq, 1.0)[3]  # latency of a request served among that many streams
        grid = np.stack([np.broadcast_to(closed(np.minimum(share * n + 1.0, slots)), shape)[todo]
                         for share in theory.RUN_GRID], axis=-1)
    cols = np.broadcast_to(np.arange(shape[-1]), shape)[todo]
    fluid = theory.fluid_run_latency(np.broadcast_to(rate, shape)[todo], n[cols], np.broadcast_to(slots, shape)[todo],
                                     grid)
    cv2 = np.broadcast_to(inputs.get("arrival_cv2", theory.POISSON), shape)[todo]
    out[todo] = theory.finite_run_latency(out[todo], np.broadcast_to(wait, shape)[todo], fluid,
                                          theory.fluctuation_wait(n[cols], capacity[todo], cv2), load[todo],
                                          np.broadcast_to(rate, shape)[todo], n[cols])
    return out


def _laws(inputs: dict, k, tau, tau_sq, drafter_scale):
    """``(costs, demand, open_piece, closed, (share, log_q, knee, compute_share, k per decode step))``:
    the service costs, the demand split, and the verifier form's open-loop (``open_piece(rate, shift)``:
    a request meets ``rate L - shift`` others, :mod:`bayes_sd.theory.arrivals`) and closed-loop
    (``closed(streams)``) latency laws."""
    c, share, log_q = inputs["cost"], inputs["share"], inputs["log_q"]
    k, tau, tau_sq = theory.per_decode_step(k, tau, tau_sq, inputs.get("draft_share", 1.0))
    D = inputs["output_len"]
    costs = theory.ServiceCosts(**{n: (c[n] if n[0] != "d" else c[n] * drafter_scale * (k > 0)) for n in COEFS},
                                s1=c["s1"], e0=c["e0"], e1=c["e1"])
    dem = theory.demand(costs, k, tau, inputs["prompt_len"], D, tau_sq=tau_sq).scaled(
        *inputs.get("configuration", (1.0, 1.0)))
    knee, r = inputs["knee_tokens"], inputs["compute_share"]
    if np.any(r > 0):  # roofline variants: a pass past its knee grows with its tokens
        compute = theory.iterations(D, tau, tau_sq) * costs.v0 * r

        def open_piece(rate, shift):
            lat_knee, fixed_point = theory.latency_knee_open(dem.c1, dem.c2, compute, knee, k, rate, shift=shift)
            lat = np.where(fixed_point, lat_knee, np.inf)
            if np.any(share > 0):  # MoE verifiers with a knee: no closed form, the fixed point by iteration
                lat = _moe_knee_open(costs.v0, dem, share, log_q, r, knee, k, D, tau, tau_sq, rate, shift, lat)
            return lat

        def closed(streams):
            lat = theory.latency_knee_closed(dem.c1, dem.c2, compute, knee, k, streams)
            if np.any(share > 0):
                lat = _moe_knee_closed(costs.v0, dem, share, log_q, r, knee, k, D, tau, tau_sq, streams, lat)
            return lat
    else:  # dense, or MoE coverage alone (Newton; exact for the dense columns, whose saving is 0)
        saving = theory.iterations(D, tau, tau_sq) * costs.v0 * share

        def open_piece(rate, shift):
            lat = theory.latency_open(dem.c1 - shift * dem.c2, dem.c2, rate)
            finite = np.isfinite(lat)
            return np.where(finite, theory.latency_moe_open_newton(
                dem.c1, dem.c2, saving, log_q, k, rate, start=np.where(finite, lat, 1.0), shift=shift), np.inf)

        def closed(streams):
            return theory.latency_closed(dem.c1, dem.c2, streams) - saving * theory.moe_untouched(log_q, k,
                                                                                                streams - 1.0)
    return costs, dem, open_piece, closed, (share, log_q, knee, r, k)


def _moe_columns(share, shape, *arrays):
    """The columns (conditions) of MoE verifiers, and ``arrays`` broadcast to ``shape`` and cut to them."""
    cols = np.any(share > 0, axis=0)
    return cols, [np.broadcast_to(a, shape)[:, cols] for a in arrays]


def _moe_knee_open(v0, dem, share, log_q, r, knee, k, D, tau, tau_sq, rate, shift, lat_open):
    """``lat_open`` with the columns of MoE verifiers replaced by the open-loop latency with both expert
    coverage and the roofline knee in the verify pass (``theory.latency_moe_knee_open``: inf where
    the knee saturates the server), a request meeting ``rate L - shift`` others."""
    lat_open = lat_open.copy()
    n_v0 = theory.iterations(D, tau, tau_sq) * v0
    cols, (n_v0, c1, c2, share, log_q, r, knee, k, rate, shift) = _moe_columns(
        share, lat_open.shape, n_v0, dem.c1, dem.c2, share, log_q, r, knee, k, rate, shift)
    lat_open[:, cols] = theory.latency_moe_knee_open(c1, c2, n_v0, share, log_q, r, knee, k, rate, shift=shift)
    return lat_open


def _moe_knee_closed(v0, dem, share, log_q, r, knee, k, D, tau, tau_sq, streams, lat_closed):
    """``lat_closed`` with the columns of MoE verifiers replaced by the closed-loop latency at ``streams``
    with both expert coverage and the roofline knee in the verify pass (build.py's ``load_extra``)."""
    lat_closed = np.array(np.broadcast_to(lat_closed, np.broadcast_shapes(np.shape(lat_closed), np.shape(share))))
    n_v0 = theory.iterations(D, tau, tau_sq) * v0
    cols, (n_v0, c1, c2, share, log_q, r, knee, k, streams) = _moe_columns(
        share, lat_closed.shape, n_v0, dem.c1, dem.c2, share, log_q, r, knee, k, streams)
    extra = n_v0 * (theory.verify_cost_multiplier(share, log_q, r, knee, k, streams - 1.0) - 1.0)
    lat_closed[:, cols] = theory.latency_at_load(c1, c2, streams - 1.0) + extra
    return lat_closed
