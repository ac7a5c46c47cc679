"""The learned token budget of length-aware text: a cost line fitted over
calls of every size, and per batch the budget whose plan (rows x longest over
sorted lengths) that line predicts fastest. Model-free, no pipeline."""

import numpy as np
import pytest

from runinference._handlers import sub_batches
from runinference._handlers.sub_batches import (CallCosts, TokenBudget,
                                                cheapest_budget, plan)


def _ragged(n=200, seed=5):
  rng = np.random.default_rng(seed)
  return [int(x) for x in np.clip(rng.lognormal(3.3, 0.8, n), 4, 250)]


def _cost(lengths, budget, fixed, per_token):
  groups = plan(lengths, budget)
  padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
  return len(groups) * fixed + padded * per_token


@pytest.mark.parametrize('fixed', [0.0, 0.002, 0.008, 0.05])
@pytest.mark.parametrize('seed', [1, 2])
def test_cheapest_budget_is_the_fastest_plan_on_the_grid(fixed, seed):
  lengths, per_token = _ragged(seed=seed), 1e-4
  largest = 4096
  chosen = cheapest_budget(lengths, (fixed, per_token), largest)
  assert sub_batches.MIN_TOKENS_PER_BATCH <= chosen <= largest
  grid = [largest]
  while grid[-1] / 2 ** 0.25 >= sub_batches.MIN_TOKENS_PER_BATCH:
    grid.append(int(grid[-1] / 2 ** 0.25))
  best = min(_cost(lengths, b, fixed, per_token) for b in grid)
  assert _cost(lengths, chosen, fixed, per_token) == pytest.approx(best)


def test_a_larger_fixed_cost_buys_larger_sub_batches():
  lengths = _ragged()
  chosen = [cheapest_budget(lengths, (fixed, 1e-4), 8192)
            for fixed in (0.0, 0.004, 0.016, 0.064, 1.0)]
  assert chosen == sorted(chosen) and chosen[0] < chosen[-1]
  # A huge fixed cost: as few calls as the largest budget makes.
  assert len(plan(lengths, chosen[-1])) == len(plan(lengths, 8192))
  # No fixed cost: the least padding, less than the largest budget pads.
  assert _cost(lengths, chosen[0], 0, 1) < _cost(lengths, 8192, 0, 1)


def test_equal_lengths_take_the_largest_budget():
  assert cheapest_budget([16] * 500, (0.001, 1e-5), 2048) == 2048


def test_call_costs_keep_small_calls_after_calls_grow():
  """The fixed part stays pinned by early small calls although the last
  many calls all had about the same size (a recent-only fit drifts)."""
  costs = CallCosts()
  fixed, per_token = 0.01, 1e-4
  costs.observe(64, 5.0)  # the warm-up call is not used
  assert costs.line() is None
  for padded in (64, 128, 256, 512, 1024):
    costs.observe(padded, fixed + per_token * padded)
  rng = np.random.default_rng(0)
  for _ in range(200):  # then only calls of ~700 tokens, with 5% noise
    padded = int(rng.integers(650, 750))
    costs.observe(padded, (fixed + per_token * padded) *
                  rng.uniform(0.95, 1.05))
  got_fixed, got_per = costs.line()
  assert got_fixed == pytest.approx(fixed, rel=0.3)
  assert got_per == pytest.approx(per_token, rel=0.1)
  assert costs.largest == 1024


def test_call_costs_without_a_positive_slope_say_nothing():
  costs = CallCosts()
  for padded, seconds in ((10, 1.0), (100, 0.5), (1000, 0.2)):
    costs.observe(padded, seconds)
  assert costs.line() is None




def _padded(lengths, budget):
  return sum(len(g) * max(lengths[i] for i in g) for g in plan(lengths, budget))


@pytest.mark.parametrize('fixed', [0.004, 0.0])
def test_the_budget_follows_the_measured_cost_of_calls(fixed):
  """Calls whose fixed cost dwarfs their tokens grow the budget (at most
  doubling the largest call measured per batch); calls with no fixed cost
  shrink it to the plans that pad least. The calls' times come from a clock
  the fake model advances: measured on the wall clock of a loaded machine
  they fitted a fixed cost out of scheduling noise (budgets 509 and 1010)."""
  now = [0.0]
  budget = TokenBudget(start={'CPU': 512}, clock=lambda: now[0])
  lengths = _ragged(400)
  assert budget.groups(lengths, on_gpu=False) == plan(lengths, 512)
  per_token = 2e-6

  def _busy(seconds):  # the model's time, on the budget's clock
    now[0] += seconds

  for _ in range(6):  # a call's "model" takes fixed + per_token * padded
    out = budget.run(lengths, lengths, False, lambda sub: _busy(
        fixed + per_token * len(sub) * max(sub)) or sub)
    assert out == lengths
  learned = budget.tokens(on_gpu=False)
  if fixed:
    assert 512 < learned <= sub_batches.MAX_TOKENS_PER_BATCH['CPU']
  else:
    assert _padded(lengths, learned) < _padded(lengths, 512)
  assert budget.tokens(on_gpu=True) == sub_batches.DEFAULT_TOKENS_PER_BATCH[
      'GPU']  # learned per device


def test_a_given_budget_is_kept():
  budget = TokenBudget(96)
  lengths = _ragged(100)
  assert budget.groups(lengths, on_gpu=False) == plan(lengths, 96)
  budget.run(list(range(100)), lengths, False, lambda sub: sub)
  assert budget.tokens(on_gpu=False) == 96
