"""Is the model any good: baselines side by side, and recovery of a known truth.

- :mod:`.least_squares` and :mod:`.batch1`: the baselines (a least-squares fit of the same
  closed form; the batch-1 formulas of Leviathan et al. and Yan et al.);
- :mod:`.baselines`: fit them on the model's training runs, predict and score them next to it;
- :mod:`.recovery`: fit simulated runs with known costs and check interval coverage.
"""
