"""The headline_sensitivity experiment (issue 24, item 5) and its report section."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mcdla.config.experiment import load_experiment
from mcdla.run import check_point, simulate


def test_the_experiment_loads_and_every_point_validates():
    experiment = load_experiment("headline_sensitivity")
    cache: dict = {}
    for point in experiment.points:
        check_point(point, cache)
    assert experiment.name == "headline_sensitivity" and len(experiment.points) == 8 * 51


def test_its_paper_reading_is_fig11_13s_runs_of_the_three_designs():
    def runs(points):
        return {tuple(sorted((k, v) for k, v in p.items() if k != "label")) for p in points}
    paper = [p for p in load_experiment("headline_sensitivity").points if p["label"].startswith("paper/")]
    fig13 = [p for p in load_experiment("fig11_13").points if p["topology"] in ("dc", "hc", "ring")
             and p["policy"] == "bw_aware"]
    assert runs(paper) == runs(fig13)


def test_every_reading_says_what_it_changes_and_reproduce_runs_it():
    from mcdla.cli.reproduce import EXPERIMENTS
    from mcdla.sweep.report import _READINGS

    readings = {p["label"].partition("/")[0] for p in load_experiment("headline_sensitivity").points}
    assert readings == set(_READINGS)
    assert "headline_sensitivity" in EXPERIMENTS


def test_pcie_at_twice_the_rate_is_dc_dla_with_a_switch_per_device():
    # The pcie_unshared reading doubles DC-DLA's PCIe links rather than give each device
    # its own switch: the two devices of a switch move in lockstep, so each gets a
    # whole uplink's 12 GB/s either way.
    nvlink = [["D0", "D3", "nvlink", 2], ["D0", "D4", "nvlink", 2], ["D1", "D2", "nvlink", 2],
              ["D1", "D5", "nvlink", 2], ["D2", "D3", "nvlink", 2], ["D4", "D7", "nvlink", 2],
              ["D5", "D6", "nvlink", 2], ["D6", "D7", "nvlink", 2], ["D0", "D1", "nvlink"], ["D0", "D2", "nvlink"],
              ["D1", "D3", "nvlink"], ["D2", "D6", "nvlink"], ["D3", "D7", "nvlink"], ["D4", "D5", "nvlink"],
              ["D4", "D6", "nvlink"], ["D5", "D7", "nvlink"]]
    pcie = [[f"D{i}", f"SW{i}", "pcie"] for i in range(8)] + [[f"SW{i}", f"CPU{i // 4}", "pcie"] for i in range(8)]
    own = simulate("dc", "bw_aware", "alexnet", "model", 64,
                   [("topology.switches", 8), ("topology.connections", nvlink + pcie)])
    doubled = simulate("dc", "bw_aware", "alexnet", "model", 64, [("links.pcie.bw", "32 GB/s")])
    shared = simulate("dc", "bw_aware", "alexnet", "model", 64)
    assert own["iteration_time_s"] == pytest.approx(doubled["iteration_time_s"], rel=1e-12)
    assert own["iteration_time_s"] < shared["iteration_time_s"]


# Iteration times (s) of a synthetic sweep, by reading, design and mode, for alexnet and
# rnn_gru. regather runs only model-parallel and pcie_unshared only DC-DLA: the rest of
# their headlines come from the paper reading's runs.
TIMES = {
    ("paper", "dc", "data"): (4.0, 6.0), ("paper", "hc", "data"): (2.0, 2.0),
    ("paper", "ring+bw_aware", "data"): (1.0, 1.5),
    ("paper", "dc", "model"): (3.0, 3.0), ("paper", "hc", "model"): (1.0, 1.5),
    ("paper", "ring+bw_aware", "model"): (0.5, 1.0),
    ("regather", "dc", "model"): (4.0, 4.0), ("regather", "hc", "model"): (2.0, 4.0),
    ("regather", "ring+bw_aware", "model"): (1.0, 2.0),
    ("pcie_unshared", "dc", "data"): (2.0, 3.0), ("pcie_unshared", "dc", "model"): (1.5, 1.5),
}


def _table() -> pd.DataFrame:
    rows = []
    for (reading, design, mode), times in TIMES.items():
        topology, _, policy = design.partition("+")
        for workload, time_s in zip(("alexnet", "rnn_gru"), times):
            rows.append({"label": f"{reading}/{design}", "topology": topology, "policy": policy or "bw_aware",
                         "workload": workload, "parallel": mode, "batch": 512, "iteration_time_s": time_s,
                         "status": "ok"})
    return pd.DataFrame(rows)


def test_the_section_gives_each_headline_as_the_harmonic_mean_over_workloads():
    from mcdla.sweep.report import _headline_sensitivity_section

    lines = _headline_sensitivity_section(_table())
    table = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    # Columns: HC/DC data, HC/DC model, MC(B)/DC model, MC(B)/DC data. paper: HC data
    # 4/2 and 6/2 -> HM of 2 and 3 = 2.4; HC model 3/1, 3/1.5 -> 2.4; MC(B) model 6, 3 ->
    # 4; MC(B) data 4, 4 -> 4.
    assert table["the paper"].endswith("| 1.32x | 1.38x | 2.10x | 3.50x |")
    assert table["paper"].endswith("| 2.40x | 2.40x | 4.00x | 4.00x |")
    # regather: model only. HC 4/2, 4/4 -> HM of 2 and 1 = 4/3; MC(B) 4, 2 -> 8/3.
    assert table["regather"].endswith("| 2.40x (+0%) | 1.33x (-44%) | 2.67x (-33%) | 4.00x (+0%) |")
    # pcie_unshared: DC-DLA only, over the paper's HC-DLA and MC-DLA(B). HC data 1, 1.5
    # -> 1.2; HC model 1.5, 1 -> 1.2; MC(B) model 3, 1.5 -> 2; MC(B) data 2, 2 -> 2.
    assert table["pcie_unshared"].endswith("| 1.20x (-50%) | 1.20x (-50%) | 2.00x (-50%) | 2.00x (-50%) |")
    assert [name for name in table if name not in ("reading", "---")][:4] == [
        "the paper", "paper", "regather", "pcie_unshared"]


def test_a_headline_no_run_gives_is_a_dash_not_a_number():
    from mcdla.sweep.report import _headline_sensitivity_section

    data = _table()
    data = data[~((data["label"] == "paper/hc") & (data["parallel"] == "model"))]
    lines = _headline_sensitivity_section(data)
    paper = next(line for line in lines if line.startswith("| paper |"))
    assert paper.endswith("| 2.40x | — | 4.00x | 4.00x |")


@pytest.mark.parametrize("workload,moved", [
    # conv2-conv5 read (through recomputed ReLUs and pools) the outputs of the input and
    # conv1-conv4; conv5's and the fully connected layers' outputs feed no convolution.
    ("alexnet", ["input", "conv1", "conv2", "conv3", "conv4"]),
    ("rnn_gru", []),  # no convolution: nothing leaves the device
])
def test_vdnn_conv_offloads_only_what_convolutions_read(workload, moved):
    from mcdla.hw.workload import load_workload
    from mcdla.sim.offload import OFFLOADS

    layers = load_workload(workload).layers
    decision = OFFLOADS.get("vdnn_conv")().decide(layers, virtualize=True, recompute_cheap=True)
    assert [layer.name for layer, out in zip(layers, decision.offloaded) if out] == moved


def test_vdnn_conv_keeps_what_it_does_not_offload_and_plan_does_not_search_it():
    from mcdla.sim.offload import OFFLOADS

    conv = simulate("dc", "bw_aware", "alexnet", "data", 64, [("execution.offload", "vdnn_conv")])
    every = simulate("dc", "bw_aware", "alexnet", "data", 64)
    assert conv["offloaded_bytes"] < every["offloaded_bytes"]
    assert conv["device_mem_peak_bytes"] > every["device_mem_peak_bytes"]
    assert not OFFLOADS.get("vdnn_conv").searched and OFFLOADS.get("capacity_aware").searched
