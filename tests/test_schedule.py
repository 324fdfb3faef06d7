"""The schedules as pure functions (mcdla.sim.schedule): order, warm-up, dependencies, peak."""

import pytest

from mcdla.errors import InputError
from mcdla.sim.schedule import SCHEDULES, Step, in_flight_peak, steps, warmup


def _check_complete(order, m, v):
    """Every (micro-batch, chunk) runs forward once and backward once, forward first."""
    seen = {}
    for n, step in enumerate(order):
        seen.setdefault((step.kind, step.micro, step.chunk), []).append(n)
    for j in range(m):
        for c in range(v):
            f, b = seen.get(("F", j, c)), seen.get(("B", j, c))
            assert f is not None and b is not None and len(f) == len(b) == 1, (j, c)
            assert f[0] < b[0], (j, c)
    assert len(order) == 2 * m * v


def test_none_is_one_forward_then_one_backward():
    assert steps("none", 0, 1, 1) == [Step("F", 0, 0), Step("B", 0, 0)]


def test_gpipe_runs_every_forward_then_every_backward():
    order = steps("gpipe", 1, 4, 3)
    assert [s.kind for s in order] == ["F"] * 3 + ["B"] * 3
    assert in_flight_peak(order) == 3


@pytest.mark.parametrize("p,m", [(4, 8), (4, 2), (2, 4), (8, 8)])
def test_1f1b_warmup_and_peak(p, m):
    for s in range(p):
        order = steps("1f1b", s, p, m)
        _check_complete(order, m, 1)
        first_b = next(n for n, step in enumerate(order) if step.kind == "B")
        assert first_b == min(p - s, m)
        assert warmup("1f1b", s, p, m) == min(p - s - 1, m)
        # Narayanan et al.: stage s holds at most p - s micro-batches (m at most).
        assert in_flight_peak(order) == min(p - s, m)
        # In the steady state, forwards and backwards alternate.
        mid = order[first_b - 1: len(order) - (p - s - 1)]
        assert all(a.kind != b.kind for a, b in zip(mid, mid[1:]))


def test_1f1b_without_stages_is_gradient_accumulation():
    assert steps("1f1b", 0, 1, 3) == [Step("F", 0), Step("B", 0), Step("F", 1), Step("B", 1), Step("F", 2),
                                      Step("B", 2)]


def test_interleaved_follows_megatron_order():
    # p = 2, v = 2, m = 4 on stage 0: Megatron runs chunk 0 for micro-batches 0, 1, then
    # chunk 1 for 0, 1, ...; warm-up (2 - 0 - 1) * 2 + (2 - 1) * 2 = 4 forwards.
    order = steps("interleaved", 0, 2, 4, 2)
    assert order[:4] == [Step("F", 0, 0), Step("F", 1, 0), Step("F", 0, 1), Step("F", 1, 1)]
    assert order[4:6] == [Step("F", 2, 0), Step("B", 0, 1)]  # the first backward is of the last chunk
    assert warmup("interleaved", 0, 2, 4, 2) == 4
    assert warmup("interleaved", 1, 2, 4, 2) == 2


@pytest.mark.parametrize("p,m,v", [(2, 4, 2), (4, 8, 2), (4, 8, 3), (4, 4, 2), (2, 6, 4)])
def test_interleaved_is_complete_with_megatrons_peak(p, m, v):
    for s in range(p):
        order = steps("interleaved", s, p, m, v)
        _check_complete(order, m, v)
        w = m * v if m == p else min((p - s - 1) * 2 + (v - 1) * p, m * v)
        assert warmup("interleaved", s, p, m, v) == w
        assert in_flight_peak(order) == min(w + 1, m * v)
        # Within a chunk, micro-batches run forward in order, and backward too.
        for kind in "FB":
            for c in range(v):
                js = [step.micro for step in order if step.kind == kind and step.chunk == c]
                assert js == sorted(js)


def test_interleaved_first_stage_holds_korthikantis_activations():
    # Korthikanti et al. 2022 (Section 4.2.3): the interleaved schedule's first stage holds
    # p micro-batches' worth of its layers times 1 + (p - 1) / (p v); in chunks of 1/v of them:
    for p, v in ((4, 2), (8, 2), (4, 4)):
        m = 4 * p
        assert in_flight_peak(steps("interleaved", 0, p, m, v)) == p * v + (p - 1)


def test_unknown_schedule_is_an_input_error():
    assert set(SCHEDULES.names()) == {"none", "gpipe", "1f1b", "interleaved"}
    with pytest.raises(InputError, match="training.schedule"):
        steps("zigzag", 0, 2, 2)
