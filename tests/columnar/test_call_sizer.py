"""CallSizer (rows_per_call='auto'), without pipelines: calls whose time is
``fixed + per_row * rows`` lead to calls where ``fixed`` is ~5% of the time,
whatever the chunk size, and never past the cap."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runinference._core.call_sizing import CallSizer
from runinference.exceptions import ConfigurationError


def _drive(sizer: CallSizer, chunk: int, fixed: float, per_row: float,
           calls: int = 40) -> list:
  """Calls as ColumnarDoFn makes them: whole chunks until the target."""
  sizes = []
  for _ in range(calls):
    rows = max(chunk, -(-sizer.rows // chunk) * chunk)
    sizes.append(rows)
    sizer.observe(rows, fixed + per_row * rows)
  return sizes


def test_the_first_calls_double_then_the_fit_sets_the_size():
  sizer = CallSizer(fixed_share=0.05, max_rows=1 << 20)
  sizes = _drive(sizer, chunk=1000, fixed=0.002, per_row=1e-7)
  assert sizes[:2] == [1000, 2000]
  want = 0.002 * 0.95 / (0.05 * 1e-7)  # 380,000 rows
  assert sizes[-1] == pytest.approx(want, rel=0.01)


@settings(max_examples=60, deadline=None)
@given(chunk=st.integers(1, 20000),
       fixed=st.floats(1e-5, 0.05),
       per_row=st.floats(1e-9, 1e-4),
       cap=st.integers(1 << 10, 1 << 20))
def test_the_fixed_share_settles_near_the_target_or_at_the_cap(
    chunk, fixed, per_row, cap):
  sizer = CallSizer(fixed_share=0.05, max_rows=cap)
  sizes = _drive(sizer, chunk, fixed, per_row)
  assert all(s <= max(cap, chunk) + chunk for s in sizes)
  want = fixed * 0.95 / (0.05 * per_row)
  if fixed + per_row * chunk >= 0.05:  # calls long already: no merging
    assert set(sizes) == {chunk}
  elif want <= chunk:  # one chunk is already enough
    assert sizer.rows <= max(chunk, 2 * chunk)
  elif want < cap:
    assert abs(sizer.rows - want) <= max(1, 0.02 * want)
  else:
    assert sizer.rows == cap


def test_long_calls_are_not_merged_to_explore():
  """A call of 100 ms: its fixed cost cannot matter much, and merging large
  chunks would only copy them."""
  sizer = CallSizer()
  assert _drive(sizer, chunk=65536, fixed=0.002, per_row=1.5e-6,
                calls=10) == [65536] * 10


def test_without_a_fixed_cost_calls_stop_growing():
  sizer = CallSizer()
  sizes = _drive(sizer, chunk=500, fixed=0.0, per_row=1e-6)
  assert max(sizes) <= 1000


def test_noise_that_fits_a_negative_slope_keeps_growing_within_the_cap():
  sizer = CallSizer(max_rows=4096)
  sizer.observe(100, 0.01)
  sizer.observe(200, 0.005)  # the larger call was faster: no slope yet
  assert 200 < sizer.rows <= 4096
  for _ in range(20):
    sizer.observe(sizer.rows, 0.001)
  assert sizer.rows <= 4096


def test_empty_calls_are_ignored_and_the_share_is_checked():
  sizer = CallSizer()
  sizer.observe(0, 1.0)
  assert sizer.rows == 1
  for bad in (0, 1, -0.5, 1.5):
    with pytest.raises(ConfigurationError, match='fixed_share'):
      CallSizer(fixed_share=bad)
