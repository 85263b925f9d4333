"""Per-noise-level schedules: nearest grid point on the EDM grid or on an explicit t_grid."""

import math

import pytest

from pspc_core.errors import ParameterError
from pspc_core.schedule import GridSchedule, edm_schedule


def test_default_grid_is_the_float32_edm_grid_and_picks_the_nearest_point():
    s = GridSchedule([5, 4, 3], t_min=0.002, t_max=80.0, rho=7.0)
    assert s.t.tolist() == edm_schedule(3).tolist()
    assert [s.value(t) for t in (100.0, float(s.t[1]) * 1.01, 0.0)] == [5, 4, 3]


def test_explicit_grid_in_any_order_with_ties_to_the_first():
    cosine = [math.tan(i / 20 * math.pi / 2.016) for i in range(20)]  # Kamb & Ganguli's grid, tau = i/20
    s = GridSchedule(list(range(20)), t_grid=cosine)
    assert [s.value(t) for t in cosine] == list(range(20))
    assert GridSchedule([1, 2], t_grid=[1.0, 3.0]).value(2.0) == 1


def test_a_single_value_applies_at_every_t():
    s = GridSchedule([7])
    assert {s.value(t) for t in (0.002, 1.0, 80.0, 1e4)} == {7}


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=[]), "empty"),
    (dict(values=[1, 2], t_grid=[1.0]), "one noise level per value"),
    (dict(values=[1], t_grid=[float("nan")]), "non-finite"),
    (dict(values=[1, 2], t_min=5.0, t_max=1.0), "t_min < t_max"),
])
def test_bad_schedules_are_parameter_errors(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        GridSchedule(**kwargs)
