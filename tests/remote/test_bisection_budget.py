"""The request budget of a failing batch's bisection (remote_budget), without
a pipeline: bisection calls are recognised by identity, counted, refused past
the cap, and the budget ends once the batch's rows are settled."""
import pytest

from runinference._handlers.remote_budget import (BisectionBudget,
                                                  default_bisect_requests)
from runinference.remote import BisectionBudgetSpent, RemoteRequestError


def _failed_batch(budget, n=8):
  rows = [[i] for i in range(n)]
  error = RemoteRequestError('row error', status=400)
  assert budget.begin(rows) is None  # a batch of its own
  budget.spend(None, 1)
  budget.end(rows, None, error)
  return rows, error


def test_bisection_calls_are_counted_and_refused_past_the_cap():
  budget = BisectionBudget(max_requests=3)
  rows, error = _failed_batch(budget)
  probe = budget.begin(rows[:4])
  assert probe is not None
  budget.spend(probe, 3)
  budget.end(rows[:4], probe, error)
  with pytest.raises(BisectionBudgetSpent, match='3 request') as info:
    budget.begin(rows[4:])
  assert info.value.__cause__ is error


def test_equal_rows_that_are_other_objects_are_a_batch_of_their_own():
  budget = BisectionBudget(max_requests=1)
  rows, _ = _failed_batch(budget)
  assert budget.begin([list(r) for r in rows[:4]]) is None
  assert budget.begin(rows[:4]) is None  # the failed batch was forgotten


def test_the_budget_ends_once_every_row_is_settled():
  budget = BisectionBudget(max_requests=2)
  rows, error = _failed_batch(budget, n=4)
  for part in (rows[:2], rows[2:]):
    probe = budget.begin(part)
    budget.spend(probe, 1)
    budget.end(part, probe, None)  # succeeded
  assert budget.begin(rows[:2]) is None  # a new batch, not refused


def test_a_batch_failing_for_a_reason_not_about_rows_starts_no_budget():
  budget = BisectionBudget(max_requests=1)
  rows = [[i] for i in range(4)]
  budget.end(rows, None, None)
  assert budget.begin(rows[:2]) is None


def test_default_budget_grows_with_the_halvings():
  assert default_bisect_requests(1) == 4
  assert default_bisect_requests(8) == 12
  assert default_bisect_requests(256) == 32
