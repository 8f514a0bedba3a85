"""`tollgate up`'s supervision of its children (the restarts themselves are proved by the fault
tests: tests/test_faults_recovery.py)."""
from __future__ import annotations

from control_plane.ops.supervisor import STABLE_SECONDS, Child


def test_a_child_dying_again_and_again_waits_longer_each_time():
    child = Child("redis", ["redis-server"])
    pauses = []
    for started in range(0, 80, 10):
        child.started = started
        pauses.append(child.restart_pause(started + 1))
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_child_that_ran_a_while_before_dying_is_restarted_after_the_shortest_pause():
    child = Child("redis", ["redis-server"], restarts=7)
    child.started = 1000.0
    assert child.restart_pause(1000.0 + STABLE_SECONDS) == 1
