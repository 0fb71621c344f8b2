"""Random fleets of configurations, their measured runs, and the ground truth of draft-length decisions.

:func:`random_fleet` draws, from one seed:

- 1-3 devices, 2-4 verifiers (at least one MoE in most fleets), 1-2 workloads, and 2-3 drafter
  kinds (EAGLE-style heads of 1-3 blocks, one per verifier; a small standalone model of the
  verifier's tokenizer family; sometimes the model-free n-gram drafter); a fleet with fewer
  (verifier, drafter, device, workload) combinations than ``n_configs`` takes another device or
  workload;
- the acceptance of every pair on every workload (:class:`~.workloads.AcceptanceProfile`: a mean
  first-position acceptance, its spread over requests, a decay ratio per position, easy and hard
  stretches), with now and then a poor drafter;
- per (verifier, device): the tensor-parallel degree that holds the weights, the KV capacity, a
  batch cap and a token budget; per (verifier, workload): a skewed expert popularity (MoE);
- ``n_configs`` configurations (verifier, drafter, device, workload), each measured at a grid of
  draft lengths (e.g. 2, 4, 7; some at one length only), plus the runs without speculation of
  each (verifier, device, workload);
- loads: open loop at fractions of the capacity without speculation (light to past it; the
  capacity is the throughput of a closed-loop run with a full batch), and closed loop at 1 stream
  to past the batch cap. Every run has its own server state (a lognormal factor on all its step
  times), its own expert popularity around the base one, and its own request stream.

It returns the canonical runs (aggregated and flagged by
:func:`bayes_sd.traces.aggregate.aggregate_runs`), the models table, and the **truth**: for every
configuration and load, the mean latency at every ``k`` in ``0..k_max`` simulated with many
requests, a mean server state and the base popularity, the capacity at each ``k``, and the best
``k`` (lowest latency among the ``k`` that keep up with the load).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_sd.traces.aggregate import aggregate_runs, started_inside
from bayes_sd.traces.schema import NO_DRAFTER
from bayes_sd.traces.validate import format_per_position

from .costs import PassCost, kv_capacity_tokens, pass_cost, tensor_parallel_degree
from .hardware import DEVICES, Device
from .models import FAMILY_DRAFTERS, STANDALONE_DRAFTERS, VERIFIERS, eagle_head, ngram_drafter
from .server import ServerSettings, request_stream, simulate_arrays
from .shapes import ExpertRouting, ModelShape
from .workloads import WORKLOADS, AcceptanceProfile, Workload

__all__ = ["GENERATOR_VERSION", "random_fleet", "fleets", "TRUTH_COLUMNS", "no_speculation_share", "fleet_summary"]

#: Version of the generator; bump it when a change alters what a seed produces.
GENERATOR_VERSION = "outfamily-2"

#: Columns of the truth table.
TRUTH_COLUMNS = (
    "source", "condition", "hardware", "verifier", "drafter", "dataset", "load_type", "rate_rps", "concurrency",
    "load_fraction", "k", "latency_mean_s", "ttft_mean_s", "tpot_mean_s", "acceptance_length", "capacity_rps",
    "past_capacity", "best_k", "measured", "tp", "max_num_seqs", "kv_cache_tokens", "n_requests",
)

#: Open-loop loads, as fractions of the capacity without speculation.
_RATE_FRACTIONS = (0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 1.05, 1.2)
#: Closed-loop loads, streams (those above 1.5 x the batch cap are dropped).
_CONCURRENCIES = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 384)
#: Draft-length grids a configuration may be measured at.
_K_GRIDS = ((2, 4, 7), (2, 4, 7), (2, 4), (3, 5), (1, 3, 6), (4,), (2,), (5,))
#: An open-loop load at or above this fraction of a k's capacity has no steady state.
_PAST_CAPACITY = 0.97


@dataclass(frozen=True)
class _Base:
    """A verifier on a device with a workload: what the runs without speculation share."""

    verifier: ModelShape
    device: Device
    workload: Workload
    tp: int
    settings: ServerSettings
    popularity: np.ndarray | None


@dataclass(frozen=True)
class _Config:
    """A measured configuration: a base plus a drafter and its acceptance."""

    base: _Base
    drafter: ModelShape
    profile: AcceptanceProfile
    k_grid: tuple[int, ...]


def _cost(shape: ModelShape, base: _Base, routing: ExpertRouting | None) -> PassCost:
    return pass_cost(shape, base.device, base.tp, routing)


def _throughput(start: np.ndarray, end: np.ndarray) -> float:
    """Completions per second over the middle of a run (between its 20th and 90th percentile of end
    times), requests/s."""
    e = np.sort(end)
    lo, hi = int(0.2 * len(e)), int(0.9 * len(e))
    if hi - lo < 5 or e[hi] <= e[lo]:
        return float(len(e) / max(e[-1] - start.min(), 1e-9))
    return float((hi - lo) / (e[hi] - e[lo]))


def _summary(out: tuple, output: np.ndarray, trim: float = 0.1) -> dict:
    """Mean latency, TTFT, TPOT (s) and acceptance length (tokens) of a truth run, leaving out the
    requests started in its first and last ``trim`` of the span (warm-up, drain), as the measured runs'
    aggregation does: a request started inside counts however late it ends."""
    start, first, end, _, acc, n_drafts = out[:6]
    t0, t1 = start.min(), end.max()
    keep = started_inside(start, t0 + trim * (t1 - t0), t1 - trim * (t1 - t0))
    if keep.sum() < 20:
        keep = np.ones_like(start, dtype=bool)
    lat = end - start
    drafts = n_drafts[keep].sum()
    multi = keep & (output > 1)
    return {"latency_mean_s": float(lat[keep].mean()), "ttft_mean_s": float((first - start)[keep].mean()),
            "tpot_mean_s": float(((end - first)[multi] / (output[multi] - 1)).mean()),
            "acceptance_length": float(1.0 + acc[keep].sum() / drafts) if drafts > 0 else np.nan}


def _draw_profile(rng: np.random.Generator, kind: str, verifier: ModelShape, drafter: ModelShape,
                  workload: Workload) -> AcceptanceProfile:
    """Acceptance of one pair on one workload (invented, plausible ranges)."""
    poor = rng.random() < 0.3  # a drafter trained on other data, or a mismatched pair
    poor_factor = rng.uniform(0.45, 0.75)
    hard = dict(hard_factor=rng.uniform(0.4, 0.75), to_hard=rng.uniform(0.03, 0.15), to_easy=rng.uniform(0.15, 0.4),
                concentration=rng.uniform(5.0, 20.0))
    if kind == "ngram":
        quality = workload.ngram_quality * rng.uniform(0.85, 1.1) * (poor_factor if poor else 1.0)
        match = np.clip(workload.match_probability * rng.uniform(0.7, 1.3), 0.03, 0.9)
        return AcceptanceProfile(first_mean=float(np.clip(quality, 0.15, 0.9)), decay_ratio=rng.uniform(0.75, 0.9),
                                 match_probability=float(match), **hard)
    if kind == "eagle":
        first = rng.uniform(0.68, 0.86) + 0.02 * (drafter.layers - 1)
        decay = rng.uniform(0.84, 0.95)
    else:  # standalone: smaller relative to the verifier guesses worse, decays less
        ratio = drafter.total_params / max(verifier.active_params_per_token, 1)
        first = rng.uniform(0.6, 0.8) + 0.04 * np.log10(max(ratio, 1e-3) * 10)
        decay = rng.uniform(0.9, 0.98)
    first *= workload.acceptance_scale * (poor_factor if poor else 1.0)
    return AcceptanceProfile(first_mean=float(np.clip(first, 0.15, 0.92)), decay_ratio=float(decay), **hard)


def _draw_fleet(rng: np.random.Generator, n_configs: int, k_max: int):
    """Devices, verifiers, workloads, drafters, bases and configurations of one fleet."""
    weights = np.array([1.0 if d != "A100" else 1.5 for d in DEVICES])
    device_order = [DEVICES[d] for d in rng.choice(list(DEVICES), size=len(DEVICES), replace=False,
                                                   p=weights / weights.sum())]
    n_devices = int(rng.integers(1, 4))
    dense = [v for v in VERIFIERS.values() if not v.is_moe]
    moe = [v for v in VERIFIERS.values() if v.is_moe]
    n_verifiers = int(rng.integers(2, 5))
    n_moe = int(rng.integers(1, 3)) if rng.random() < 0.85 else 0
    n_moe = min(n_moe, n_verifiers - 1) if n_verifiers > 1 else n_moe
    picked = [moe[i] for i in rng.choice(len(moe), size=n_moe, replace=False)]
    picked += [dense[i] for i in rng.choice(len(dense), size=n_verifiers - n_moe, replace=False)]
    workload_order = [WORKLOADS[w] for w in rng.permutation(list(WORKLOADS))]
    n_workloads = int(rng.integers(1, 3))
    kinds = ["eagle", "standalone", "ngram"]
    n_kinds = int(rng.integers(2, 4))
    drafter_kinds = list(rng.choice(kinds, size=n_kinds, replace=False))
    eagle_layers = int(rng.choice([1, 1, 2, 3]))
    batch_caps = {d.name: int(rng.choice([64, 128, 256, 256])) for d in device_order}
    budgets = {d.name: int(rng.choice([2048, 4096, 8192, 8192])) for d in device_order}
    host_scale = rng.uniform(0.7, 1.5)
    speculation_host = rng.uniform(0.2e-3, 1.2e-3)
    draft_pass_host = rng.uniform(0.05e-3, 0.2e-3)
    # per device, the engine's attention kernel for multi-token queries: rows per tile, and whether it packs
    # GQA heads (newer kernels pack them; older varlen kernels give every query head its own tile)
    kernels = [(64, True), (128, True), (64, False), (128, False)]
    attention = {d.name: kernels[int(rng.choice(4, p=[0.3, 0.3, 0.2, 0.2]))] for d in device_order}
    concentration = {(v.name, w.name): float(rng.choice([1.0, 2.0, 4.0, 10.0, 50.0])) for v in picked
                     for w in workload_order}
    popularity = {(v.name, w.name): rng.dirichlet(np.full(v.experts, concentration[(v.name, w.name)]), size=8)
                  for v in picked if v.is_moe for w in workload_order}
    noise = {(v.name, d.name, w.name): float(rng.uniform(0.02, 0.05)) for v in picked for d in device_order
             for w in workload_order}

    drafters_of: dict[str, list[tuple[str, ModelShape]]] = {}
    for v in picked:
        drafters: list[tuple[str, ModelShape]] = []
        for kind in drafter_kinds:
            if kind == "eagle":
                drafters.append((kind, eagle_head(v, layers=eagle_layers)))
            elif kind == "standalone" and FAMILY_DRAFTERS.get(v.name):
                drafters.append((kind, STANDALONE_DRAFTERS[FAMILY_DRAFTERS[v.name][0]]))
            elif kind == "ngram":
                drafters.append((kind, ngram_drafter()))
        drafters_of[v.name] = drafters

    def build(devices: list[Device], workloads: list[Workload]):
        bases: dict[tuple[str, str, str], _Base] = {}
        candidates: list[tuple[ModelShape, str, ModelShape, Device, Workload]] = []
        for v in picked:
            drafters = drafters_of[v.name]
            biggest = max((d for _, d in drafters), key=lambda d: d.weight_bytes, default=None)
            for dev in devices:
                tp = tensor_parallel_degree(v, dev, extra_weight_bytes=biggest.weight_bytes if biggest else 0.0)
                if tp == 0:
                    continue
                for w in workloads:
                    settings = ServerSettings(
                        max_num_seqs=batch_caps[dev.name], max_num_batched_tokens=budgets[dev.name],
                        kv_capacity_tokens=kv_capacity_tokens(v, dev, tp, biggest),
                        host_step_s=0.6e-3 * host_scale, host_sequence_s=8e-6 * host_scale,
                        speculation_host_s=speculation_host, draft_pass_host_s=draft_pass_host,
                        step_noise_sd=noise[(v.name, dev.name, w.name)],
                        attention_tile_rows=attention[dev.name][0], attention_packs_gqa=attention[dev.name][1])
                    bases[(v.name, dev.name, w.name)] = _Base(v, dev, w, tp, settings,
                                                              popularity.get((v.name, w.name)))
                    candidates += [(v, kind, d, dev, w) for kind, d in drafters]
        return bases, candidates

    # a fleet with too few combinations for n_configs takes another device, then another workload
    while True:
        bases, candidates = build(device_order[:n_devices], workload_order[:n_workloads])
        if len(candidates) >= n_configs or (n_devices >= 3 and n_workloads >= 2):
            break
        if n_devices < 3 and (n_devices <= n_workloads or n_workloads >= 2):
            n_devices += 1
        else:
            n_workloads += 1
    if not candidates:
        raise RuntimeError("no verifier of the fleet fits on its devices")

    # cover every verifier and device once, then fill at random
    order = list(rng.permutation(len(candidates)))
    chosen: list[int] = []
    for attr in ("verifier", "device"):
        seen = set()
        for i in order:
            v, _, _, dev, _ = candidates[i]
            key = v.name if attr == "verifier" else dev.name
            if key not in seen and i not in chosen:
                seen.add(key)
                chosen.append(i)
    chosen = chosen[:n_configs]
    for i in order:
        if len(chosen) >= n_configs:
            break
        if i not in chosen:
            chosen.append(i)
    configs = []
    for i in chosen:
        v, kind, d, dev, w = candidates[i]
        grid = tuple(k for k in _K_GRIDS[int(rng.integers(len(_K_GRIDS)))] if k <= k_max) or (min(2, k_max),)
        configs.append(_Config(bases[(v.name, dev.name, w.name)], d, _draw_profile(rng, kind, v, d, w), grid))
    used_bases = {(c.base.verifier.name, c.base.device.name, c.base.workload.name) for c in configs}
    return [bases[b] for b in sorted(used_bases)], configs


def _routing(rng: np.random.Generator, base: _Base, per_run: bool) -> ExpertRouting | None:
    if base.popularity is None:
        return None
    v = base.verifier
    if per_run:
        return ExpertRouting.draw(rng, v.experts, v.experts_per_token, np.inf, base=base.popularity)
    return ExpertRouting.from_popularity(base.popularity, v.experts_per_token)


def _capacity(base: _Base, drafter: PassCost | None, k: int, profile: AcceptanceProfile, seed: int,
              verifier_cost: PassCost, n_min: int = 600) -> float:
    """Throughput of a closed-loop run with a full batch (1.25 x the batch cap), requests/s."""
    streams = int(np.ceil(1.25 * base.settings.max_num_seqs))
    n = max(n_min, 4 * streams)
    stream = request_stream(np.random.default_rng(seed), n, base.workload, profile, None)
    out = simulate_arrays(verifier_cost, drafter, k, profile, base.settings, stream, concurrency=streams, seed=seed)
    return _throughput(out[0], out[2])


def _light_latency(base: _Base, verifier_cost: PassCost, seed: int, n: int = 40) -> float:
    """Mean latency of one stream without speculation (no queueing, no batching), s: the time scale
    that sizes the open-loop runs."""
    profile = AcceptanceProfile(first_mean=0.5)
    stream = request_stream(np.random.default_rng(seed), n, base.workload, profile, None)
    out = simulate_arrays(verifier_cost, None, 0, profile, base.settings, stream, concurrency=1, seed=seed)
    return float((out[2] - out[0]).mean())


def _loads(rng: np.random.Generator, base: _Base, capacity: float) -> list[tuple[str, float, float]]:
    """(load_type, rate_rps or concurrency, load fraction) of a base: 5-6 open-loop rates (one light, two
    or three mid, two heavy, up to past the capacity) and 3-4 closed-loop concurrencies (1 or 2 streams,
    one or two in the middle, one or two from half the batch cap to past it)."""
    light = [f for f in _RATE_FRACTIONS if f <= 0.15]
    heavy = [f for f in _RATE_FRACTIONS if f >= 0.85]
    middle = [f for f in _RATE_FRACTIONS if 0.15 < f < 0.85]
    fracs = [float(rng.choice(light))]
    fracs += [float(f) for f in rng.choice(middle, size=int(rng.integers(2, 4)), replace=False)]
    fracs += [float(f) for f in rng.choice(heavy, size=2, replace=False)]
    loads = [("rate", f * capacity, f) for f in sorted(fracs)]
    cap = base.settings.max_num_seqs
    allowed = [c for c in _CONCURRENCIES if c <= 1.5 * cap]
    low = [c for c in allowed if c <= 2]
    high = [c for c in allowed if c >= cap / 2]
    mid = [c for c in allowed if 2 < c < cap / 2]
    conc = [int(rng.choice(low))]
    conc += [int(c) for c in rng.choice(mid, size=min(len(mid), int(rng.integers(1, 3))), replace=False)]
    conc += [int(c) for c in rng.choice(high, size=min(len(high), int(rng.integers(1, 3))), replace=False)]
    loads += [("concurrency", float(c), c / cap) for c in sorted(set(conc))]
    return loads


def _run_id(label: str, base: _Base, drafter: str, k: int, load: tuple[str, float, float]) -> str:
    what = f"r{load[2]:.2f}" if load[0] == "rate" else f"c{int(load[1])}"
    return f"of{label}-{base.verifier.name}+{drafter}-{base.device.name}-{base.workload.name}-k{k}-{what}"


def random_fleet(seed: int, n_configs: int = 18, *, k_max: int = 7, requests_per_run: tuple[int, int] = (150, 400),
                 max_requests_per_run: int = 4000, open_loop_spans: float = 10.0, max_drain_share: float = 0.1,
                 truth_requests: int = 1500, run_factor_sd: tuple[float, float] = (0.05, 0.10),
                 label: str | None = None, verbose: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw one out-of-family fleet: its measured runs, its models and the ground truth.

    Parameters
    ----------
    seed : int
        Seed of everything (same seed, same fleet).
    n_configs : int, default 18
        Configurations (verifier, drafter, device, workload) measured with speculation.
    k_max : int, default 7
        Largest draft length of the truth (and of the measured grids).
    requests_per_run : (int, int), default (150, 400)
        Range of requests per measured run. Closed-loop runs get at least 2.5 x their streams. Open-loop
        runs get at least ``open_loop_spans`` x (rate x the latency of a lone request), and are re-drawn
        longer while the drain after their last arrival is more than ``max_drain_share`` of the run (up to
        ``max_requests_per_run``): otherwise the drain of the last (long) requests makes up much of a
        short run and its throughput looks short of the offered rate to the saturation rules.
    max_requests_per_run : int, default 4000
        Cap on the requests of an open-loop run.
    open_loop_spans : float, default 10
        Request latencies the arrivals of an open-loop run last at least.
    max_drain_share : float, default 0.1
        Longest drain after the last arrival, as a share of an open-loop run.
    truth_requests : int, default 1500
        Requests per open-loop truth simulation (closed loop: at least 6 x the streams, at least 300).
    run_factor_sd : (float, float), default (0.05, 0.10)
        Range of the fleet's sd of the per-run server-state factor (log scale).
    label : str, optional
        Written into ``source`` (``synthetic:outfamily:<label>``) and the run ids; default the seed.
    verbose : bool, default False
        Print the time of each stage.

    Returns
    -------
    runs : pandas.DataFrame
        Canonical RUNS table (``saturated`` from :func:`bayes_sd.traces.aggregate.aggregate_runs`'s rules).
    models : pandas.DataFrame
        Canonical MODELS table of the verifiers and drafters in ``runs``.
    truth : pandas.DataFrame
        One row per (condition, load, k in 0..k_max), columns :data:`TRUTH_COLUMNS`: the condition
        (a configuration: hardware, verifier, drafter, dataset), the load (``load_type``,
        ``rate_rps`` in requests/s or ``concurrency``; ``load_fraction`` of the capacity without
        speculation, or of the batch cap), the simulated ``latency_mean_s``, ``ttft_mean_s``,
        ``tpot_mean_s`` (s) and ``acceptance_length`` (tokens), ``capacity_rps`` at this ``k``
        (requests/s), ``past_capacity`` (open loop at >= 97 % of it: no steady state, latency
        infinite), ``best_k`` of the (condition, load) and whether this ``k`` was ``measured``.
    """
    t_start = time.perf_counter()
    label = str(seed) if label is None else str(label)
    source = f"synthetic:outfamily:{label}"
    rng = np.random.default_rng(seed)
    bases, configs = _draw_fleet(rng, n_configs, k_max)
    sd_run = rng.uniform(*run_factor_sd)

    def seed_of() -> int:
        return int(rng.integers(2**31 - 1))

    # capacity without speculation and the loads of each base
    truth_cost: dict[tuple, PassCost] = {}
    base_loads: dict[tuple, list] = {}
    base_capacity: dict[tuple, float] = {}
    base_latency: dict[tuple, float] = {}
    neutral = AcceptanceProfile(first_mean=0.5)
    for b in bases:
        key = (b.verifier.name, b.device.name, b.workload.name)
        truth_cost[key] = _cost(b.verifier, b, _routing(rng, b, per_run=False))
        base_capacity[key] = _capacity(b, None, 0, neutral, seed_of(), truth_cost[key])
        base_loads[key] = _loads(rng, b, base_capacity[key])
        base_latency[key] = _light_latency(b, truth_cost[key], seed_of())
    if verbose:
        print(f"  capacities: {time.perf_counter() - t_start:.1f} s")

    # measured runs
    requests, meta = [], []

    def measure(base: _Base, drafter: ModelShape | None, k: int, profile: AcceptanceProfile, load) -> None:
        name = drafter.name if (drafter is not None and k > 0) else NO_DRAFTER
        run_id = _run_id(label, base, name, k, load)
        n = int(rng.integers(requests_per_run[0], requests_per_run[1] + 1))
        conc = int(load[1]) if load[0] == "concurrency" else 0
        if conc:
            n = max(n, int(2.5 * conc))
        else:
            light = base_latency[(base.verifier.name, base.device.name, base.workload.name)]
            n = max(n, min(max_requests_per_run, int(np.ceil(open_loop_spans * load[1] * light))))
        s = seed_of()
        routing = _routing(rng, base, per_run=True)
        v_cost = _cost(base.verifier, base, routing)
        d_cost = _cost(drafter, base, None) if (drafter is not None and k > 0) else None
        factor = float(np.exp(sd_run * rng.standard_normal() - 0.5 * sd_run**2))
        while True:
            stream = request_stream(np.random.default_rng(s), n, base.workload, profile,
                                    load[1] if load[0] == "rate" else None)
            out = simulate_arrays(v_cost, d_cost, k, profile, base.settings, stream, concurrency=conc, seed=s,
                                  run_factor=factor)
            if conc or n >= max_requests_per_run:
                break
            # the drain after the last arrival must stay within max_drain_share of the run, or the
            # run's throughput (over its middle) looks short of the offered rate
            arrivals = stream["arrival"][-1] - stream["arrival"][0]
            drain = out[2].max() - stream["arrival"][-1]
            if drain <= max_drain_share * (arrivals + drain):
                break
            wanted = n * (1.0 - max_drain_share) / max_drain_share * drain / max(arrivals, 1e-9)
            n = min(max_requests_per_run, int(np.ceil(1.1 * wanted)))
        start, first, end, drafted, acc, n_drafts, reached_at, accepted_at = out[:8]
        per_position = (format_per_position(accepted_at[:k] / reached_at[0])
                        if k > 0 and reached_at[0] > 0 else None)  # vLLM's per-position counters
        requests.append(pd.DataFrame({
            "run_id": run_id, "request_id": np.arange(n).astype(str), "start_s": start, "first_token_s": first,
            "end_s": end, "prompt_tokens": stream["prompt"], "output_tokens": stream["output"],
            "draft_tokens": drafted, "accepted_tokens": acc, "num_drafts": n_drafts}))
        meta.append({"run_id": run_id, "source": source, "hardware": base.device.name,
                     "verifier": base.verifier.name, "drafter": name, "dataset": base.workload.name, "k": k,
                     "load_type": load[0], "rate_rps": load[1] if load[0] == "rate" else np.nan,
                     "concurrency": load[1] if load[0] == "concurrency" else np.nan,
                     "per_position_acceptance": per_position})

    for b in bases:
        for load in base_loads[(b.verifier.name, b.device.name, b.workload.name)]:
            measure(b, None, 0, neutral, load)
    for c in configs:
        for k in c.k_grid:
            for load in base_loads[(c.base.verifier.name, c.base.device.name, c.base.workload.name)]:
                measure(c.base, c.drafter, k, c.profile, load)
    if verbose:
        print(f"  measured {len(meta)} runs: {time.perf_counter() - t_start:.1f} s")
    runs = aggregate_runs(pd.concat(requests, ignore_index=True), pd.DataFrame(meta), source=source)

    # ground truth: every k at every load of every configuration (k = 0 shared by the drafters of a base)
    rows = []
    load_seed = {(key, load): seed_of() for key, loads in base_loads.items() for load in loads}
    no_spec: dict[tuple, dict] = {}
    for ci, c in enumerate(configs):
        b = c.base
        key = (b.verifier.name, b.device.name, b.workload.name)
        v_cost = truth_cost[key]
        d_cost = _cost(c.drafter, b, None)
        s_cap = seed_of()
        capacity = {0: base_capacity[key]}
        for k in range(1, k_max + 1):
            capacity[k] = _capacity(b, d_cost, k, c.profile, s_cap, v_cost)
        condition = f"{label}:{ci}"
        for load in base_loads[key]:
            conc = int(load[1]) if load[0] == "concurrency" else 0
            n = truth_requests if conc == 0 else max(300, 6 * conc)
            s = load_seed[(key, load)]
            stream = request_stream(np.random.default_rng(s), n, b.workload, c.profile,
                                    load[1] if load[0] == "rate" else None)
            for k in range(k_max + 1):
                past = conc == 0 and load[1] >= _PAST_CAPACITY * capacity[k]
                row = {"source": source, "condition": condition, "hardware": b.device.name,
                       "verifier": b.verifier.name, "drafter": c.drafter.name, "dataset": b.workload.name,
                       "load_type": load[0], "rate_rps": load[1] if conc == 0 else np.nan,
                       "concurrency": float(conc) if conc else np.nan, "load_fraction": load[2], "k": k,
                       "capacity_rps": capacity[k], "past_capacity": past,
                       "measured": k == 0 or k in c.k_grid, "tp": b.tp, "max_num_seqs": b.settings.max_num_seqs,
                       "kv_cache_tokens": b.settings.kv_capacity_tokens,
                       "n_requests": n}
                if past:
                    row.update(latency_mean_s=np.inf, ttft_mean_s=np.inf, tpot_mean_s=np.nan,
                               acceptance_length=np.nan)
                elif k == 0 and (key, load) in no_spec:
                    row.update(no_spec[(key, load)])
                else:
                    out = simulate_arrays(v_cost, d_cost if k > 0 else None, k, c.profile, b.settings, stream,
                                          concurrency=conc, seed=s)
                    summary = _summary(out, stream["output"])
                    row.update(summary)
                    if k == 0:
                        no_spec[(key, load)] = summary
                rows.append(row)
    truth = pd.DataFrame(rows)
    truth = _best_k(truth)[list(TRUTH_COLUMNS)]
    if verbose:
        print(f"  truth {len(truth)} rows: {time.perf_counter() - t_start:.1f} s")

    names = set(runs["verifier"]) | set(runs["drafter"]) - {NO_DRAFTER}
    shapes = {b.verifier.name: b.verifier for b in bases} | {c.drafter.name: c.drafter for c in configs}
    models = pd.DataFrame([shapes[n].models_row for n in sorted(names)])
    return runs, models, truth


def _best_k(truth: pd.DataFrame) -> pd.DataFrame:
    """Add ``best_k``: per (condition, load), the ``k`` of lowest finite latency (-1 when none keeps up)."""
    key = ["condition", "load_type", "rate_rps", "concurrency"]
    t = truth.copy()
    finite = t[np.isfinite(t["latency_mean_s"])]
    best = finite.loc[finite.groupby(key, dropna=False)["latency_mean_s"].idxmin(), key + ["k"]]
    best = best.rename(columns={"k": "best_k"})
    t = t.merge(best, on=key, how="left")
    t["best_k"] = t["best_k"].fillna(-1).astype(int)
    return t


def no_speculation_share(truth: pd.DataFrame) -> float:
    """Share of (condition, load) pairs with a steady state where ``k = 0`` is the best draft length.

    Parameters
    ----------
    truth : pandas.DataFrame
        A truth table from :func:`random_fleet` or :func:`fleets`.

    Returns
    -------
    float
        Fraction in [0, 1].
    """
    conditions = truth.drop_duplicates(["source", "condition", "load_type", "rate_rps", "concurrency"])
    conditions = conditions[conditions["best_k"] >= 0]
    return float((conditions["best_k"] == 0).mean())


def fleets(seeds: Iterable[int], **kwargs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Several fleets, concatenated.

    Parameters
    ----------
    seeds : iterable of int
        One fleet per seed.
    **kwargs
        Passed to :func:`random_fleet` (``label``, when given, is suffixed with the fleet's index).

    Returns
    -------
    runs, models, truth : pandas.DataFrame
        As :func:`random_fleet`; models listed once by name.
    """
    all_runs, all_models, all_truth = [], [], []
    label = kwargs.pop("label", None)
    for i, seed in enumerate(seeds):
        r, m, t = random_fleet(seed, label=None if label is None else f"{label}{i}", **kwargs)
        all_runs.append(r)
        all_models.append(m)
        all_truth.append(t)
    models = pd.concat(all_models, ignore_index=True).drop_duplicates("name").sort_values("name", ignore_index=True)
    return pd.concat(all_runs, ignore_index=True), models, pd.concat(all_truth, ignore_index=True)


def fleet_summary(runs: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """A few numbers that describe a fleet (or several).

    Parameters
    ----------
    runs, truth : pandas.DataFrame
        From :func:`random_fleet` or :func:`fleets`.

    Returns
    -------
    dict
        ``runs``; ``configurations`` (hardware, verifier, drafter, dataset, k of the runs); ``pairs``
        (verifier, drafter with k > 0); ``conditions`` (condition, load pairs of the truth);
        ``saturated_share`` of the runs; ``acceptance_length`` (min, max) over runs with drafts, tokens;
        ``light_load_speedup`` (min, median, max) over the conditions' lightest open-loop load and
        single-stream loads: latency at k = 0 over the best latency; ``no_speculation_share``.
    """
    spec = runs[runs["k"] > 0]
    config_cols = ["source", "hardware", "verifier", "drafter", "dataset", "k"]
    key = ["source", "condition", "load_type", "rate_rps", "concurrency"]
    light = truth[((truth["load_type"] == "rate") & (truth["load_fraction"] <= 0.15))
                  | ((truth["load_type"] == "concurrency") & (truth["concurrency"] == 1))]
    grouped = light.groupby(key, dropna=False)["latency_mean_s"]
    speedup = (light[light["k"] == 0].set_index(key)["latency_mean_s"] / grouped.min()).dropna()
    acceptance = spec["acceptance_length"].dropna()
    return {
        "runs": int(len(runs)),
        "configurations": int(len(runs.drop_duplicates(config_cols))),
        "pairs": int(len(spec.drop_duplicates(["source", "verifier", "drafter"]))),
        "conditions": int(len(truth.drop_duplicates(key))),
        "saturated_share": float(runs["saturated"].mean()),
        "acceptance_length": (float(acceptance.min()), float(acceptance.max())) if len(acceptance) else (np.nan,) * 2,
        "light_load_speedup": (float(speedup.min()), float(speedup.median()), float(speedup.max()))
        if len(speedup) else (np.nan,) * 3,
        "no_speculation_share": no_speculation_share(truth),
    }
