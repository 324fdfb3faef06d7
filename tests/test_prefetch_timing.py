"""When prefetches start (issue: hardened; a prefetch issued one layer later than
``lookahead`` says raised the default iteration time by 6.8% and no test noticed).

A chain of wide convolutions on the ring: every feature map is offloaded, and the
memory-nodes are fast enough that a copy engine is idle whenever a prefetch is issued,
so a prefetch starts the moment it is issued. With ``lookahead`` L, the tensor that
backward step s first reads is issued at the start of step s - L: after the compute of
step s - L - 1 ends and before the compute of step s - L starts.
"""

from __future__ import annotations

import json

import pytest

from mcdla.run import simulate

LAYERS = 8
CHAIN = "\n".join(
    ["name: chain", "description: a chain of wide convolutions",
     "input: {channels: 512, height: 28, width: 28}", "layers:"]
    + [f"  - {{name: c{i}, kind: conv, out_channels: 512, kernel: 3, padding: 1}}" for i in range(1, LAYERS + 1)]
) + "\n"


def _events(tmp_path, lookahead: int):
    workload = tmp_path / "chain.yaml"
    workload.write_text(CHAIN)
    trace = tmp_path / f"trace{lookahead}.json"
    simulate("ring", "bw_aware", str(workload), "data", 64, [("training.lookahead", lookahead)],
             trace=str(trace))
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    device = min(e["pid"] for e in events if e.get("cat") == "compute")  # the first device
    spans = {}
    for e in events:
        if e.get("ph") == "X" and e["pid"] == device and e.get("cat") in ("compute", "prefetch"):
            spans[e["name"]] = (e["ts"], e["ts"] + e["dur"])
    return spans


@pytest.mark.parametrize("lookahead", [1, 2, 3])
def test_prefetches_are_issued_lookahead_steps_ahead(tmp_path, lookahead):
    spans = _events(tmp_path, lookahead)
    names = ["input"] + [f"c{i}" for i in range(1, LAYERS + 1)]
    bwd_order = [names[i] for i in range(LAYERS, 0, -1)]  # backward steps 0..LAYERS-1
    checked = 0
    for t in range(LAYERS):  # the output of layer t is first read by the backward of t + 1
        step = bwd_order.index(names[t + 1])
        issue_step = step - lookahead
        if issue_step < 1:
            continue  # issued at the start of backward, before any backward compute
        start = spans[f"prefetch {names[t]}"][0]
        previous_end = spans[f"bwd {bwd_order[issue_step - 1]}"][1]
        own_start = spans[f"bwd {bwd_order[issue_step]}"][0]
        eps = 1e-6  # microseconds of rounding in the trace
        assert previous_end - eps <= start <= own_start + eps, (
            f"prefetch of {names[t]} started at {start} us, expected within the gap "
            f"[{previous_end}, {own_start}] before backward step {issue_step}")
        checked += 1
    assert checked >= LAYERS - lookahead - 2


def test_exposed_virtualization_falls_as_lookahead_grows():
    exposed = [simulate(batch=256, sets=[("training.lookahead", n)])["exposed_s"]["virtualization"]
               for n in (1, 2, 3)]
    assert exposed[0] >= exposed[1] >= exposed[2]
    assert exposed[0] > exposed[2] * 1.05, exposed
