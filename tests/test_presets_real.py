"""Real-device presets at their datasheet peaks, and --device (issue: trusted against
real machines). The peaks are the products of the preset's fields, so each is checked
against the datasheet's number, typed here from the datasheet, not recomputed."""

from __future__ import annotations

import pytest

from mcdla.config.hardware import DeviceSpec
from mcdla.config.schema import Where, build
from mcdla.config.topology import load_presets
from mcdla.run import simulate

# name -> (dense FP16 tensor TFLOPS, memory bandwidth GB/s, capacity bytes), as the
# vendors' datasheets state them (FP32 TFLOPS for the Maxwell Titan X).
DATASHEET = {
    "v100_sxm2_16gb": (125.0, 900.0, 16 * 2**30),
    "v100_sxm2_32gb": (125.0, 900.0, 32 * 2**30),
    "a100_sxm4_40gb": (312.0, 1555.0, 40e9),
    "a100_sxm4_80gb": (312.0, 2039.0, 80e9),
    "h100_sxm5": (989.0, 3350.0, 80e9),
    "titan_x_maxwell": (6.6, 336.5, 12 * 2**30),
    "h200_sxm": (989.0, 4800.0, 141e9),
    "gh200": (989.0, 4000.0, 96e9),
    "b200": (2250.0, 8000.0, 180e9),
    "mi300x": (1307.4, 5300.0, 192e9),
}


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_real_presets_match_their_datasheets(name):
    device = build(DeviceSpec, load_presets()["devices"][name], Where("presets", name))
    tflops, gbps, capacity = DATASHEET[name]
    assert 2 * device.peak_macs_per_s / 1e12 == pytest.approx(tflops, rel=0.005)
    assert device.hbm_bw == pytest.approx(gbps * 1e9)
    assert device.hbm_capacity == pytest.approx(capacity)


def test_the_paper_preset_is_unchanged():
    table2 = build(DeviceSpec, load_presets()["devices"]["table2"], Where("presets", "table2"))
    assert table2.peak_macs_per_s == 1024 * 125 * 1e9 and table2.hbm_bw == 900e9


def test_device_flag_is_set_device(capsys):
    import json

    from mcdla.cli.main import main

    assert main(["sim", "--device", "a100_sxm4_80gb", "--workload", "alexnet", "--batch", "64",
                 "--set", "training.precision=mixed", "--format", "json"]) == 0
    flag = json.loads(capsys.readouterr().out)
    mixed = [("device", "a100_sxm4_80gb"), ("training.precision", "mixed")]
    via_set = simulate("ring", "bw_aware", "alexnet", "data", 64, mixed)
    assert flag["iteration_time_s"] == via_set["iteration_time_s"]
    paper = simulate("ring", "bw_aware", "alexnet", "data", 64)
    assert flag["iteration_time_s"] < paper["iteration_time_s"]  # 2.4x the MACs, 2.3x the bandwidth
    # In fp32 the A100 runs on its CUDA cores (19.5 TFLOPS), far below its tensor cores.
    fp32 = simulate("ring", "bw_aware", "alexnet", "data", 64, [("device", "a100_sxm4_80gb")])
    assert fp32["iteration_time_s"] > 2 * flag["iteration_time_s"]


def test_every_preset_of_every_section_builds():
    from mcdla.config.hardware import HostSpec, LinkSpec, MemoryNodeSpec, NvmeSpec, SwitchSpec

    specs = {"devices": DeviceSpec, "memory_nodes": MemoryNodeSpec, "hosts": HostSpec, "links": LinkSpec,
             "switches": SwitchSpec, "nvme": NvmeSpec}
    presets = load_presets()
    assert set(presets) == set(specs)
    for section, spec in specs.items():
        for name, fields in presets[section].items():
            build(spec, fields, Where("presets", f"{section}.{name}"))


@pytest.mark.parametrize("name, gbps", [("ib_200g", 200), ("ib_400g", 400), ("ib_800g", 800)])
def test_nic_presets_are_their_line_rates(name, gbps):
    from mcdla.config.hardware import LinkSpec

    link = build(LinkSpec, load_presets()["links"][name], Where("presets", name))
    assert link.bw == pytest.approx(gbps * 1e9 / 8)


@pytest.mark.parametrize("name, per_direction", [
    ("nvlink5", 50e9), ("nvlink_c2c", 450e9), ("pcie6_x16", 128e9), ("cxl2_x16", 63e9), ("cxl3_x16", 128e9)])
def test_link_presets_per_direction(name, per_direction):
    """Datasheets give both directions together (NVLink 5: 1.8 TB/s over 18 links; C2C:
    900 GB/s): a preset is one direction of one link."""
    from mcdla.config.hardware import LinkSpec

    assert build(LinkSpec, load_presets()["links"][name], Where("presets", name)).bw == pytest.approx(per_direction)


@pytest.mark.parametrize("name, ports, port_bw, sharp", [
    ("nvswitch2", 36, 25e9, False), ("nvswitch3", 64, 25e9, True), ("nvswitch4", 72, 50e9, True),
    ("quantum2", 64, 50e9, False)])
def test_switch_generations(name, ports, port_bw, sharp):
    from mcdla.config.hardware import SwitchSpec

    switch = build(SwitchSpec, load_presets()["switches"][name], Where("presets", name))
    assert (switch.ports, switch.port_bw, switch.reduction_bw is not None) == (ports, port_bw, sharp)
