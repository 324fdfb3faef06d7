"""Phases in turn by callbacks (mcdla.sim.chains.in_turn): each plan's phases one after
another, every plan at once, done when the slowest plan ends."""

import simpy

from mcdla.sim.chains import in_turn


def _run(plans):
    env = simpy.Environment()
    started = []

    def start(phase):
        started.append((env.now, phase))
        return [env.timeout(d) for d in phase]

    ended = []

    def proc():
        yield in_turn(env, plans, start)
        ended.append(env.now)

    env.process(proc())
    env.run()
    return started, ended


def test_each_plan_runs_its_phases_in_turn_and_all_plans_at_once():
    started, ended = _run([[(1.0, 0.5), (2.0,)], [(0.25,)], [(), (3.0,)]])
    # plan 0's second phase waits for its first phase's slower flow (1 s); plan 2's empty
    # first phase is over at once, so its second starts at 0
    assert started == [(0.0, (1.0, 0.5)), (0.0, (0.25,)), (0.0, ()), (0.0, (3.0,)), (1.0, (2.0,))]
    assert ended == [3.0]


def test_no_plans_or_only_empty_phases_end_at_once():
    assert _run([])[1] == [0.0]
    assert _run([[(), ()], []])[1] == [0.0]
