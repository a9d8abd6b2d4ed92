"""The prune plan, driven by hand: batches until one comes back short, resting in between."""

from __future__ import annotations

import time

import pytest

from pgqueue.errors import ConfigurationError
from pgqueue.maintenance import _prune
from pgqueue.sql import Pause, Statement


def test_prune_runs_batches_until_one_comes_back_short() -> None:
    plan = _prune("pgqueue", 60.0, 5, 0.0)
    step = next(plan)
    assert isinstance(step, Statement)
    assert step.params == {"older_than_seconds": 60.0, "limit": 5}
    assert plan.send([(5,)]) == step
    with pytest.raises(StopIteration) as done:
        plan.send([(2,)])
    assert done.value.value == 7


def test_prune_rests_after_each_full_batch_in_proportion_to_its_duration() -> None:
    plan = _prune("pgqueue", 60.0, 5, 2.0)
    next(plan)
    time.sleep(0.05)  # the batch "took" 50 ms
    pause = plan.send([(5,)])
    assert isinstance(pause, Pause)
    assert 0.1 <= pause.seconds < 1.0
    assert isinstance(plan.send([]), Statement)
    with pytest.raises(StopIteration):
        plan.send([(0,)])  # a short batch ends it without a rest


@pytest.mark.parametrize("rest", [-1.0, float("inf"), True])
def test_prune_refuses_a_bad_rest(rest: float) -> None:
    with pytest.raises(ConfigurationError, match="rest"):
        _prune("pgqueue", 60.0, 5, rest)
