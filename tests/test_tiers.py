"""Memory as ordered tiers (mcdla.hw.tiers), state placement and the execution file.

Capacities below are counted by hand from the presets (topologies/presets/hardware.yaml):
table2 memory-node 10 x 128 GB; ddr5_node 8 x 128 GB; cxl2_expander 4 x 128 GB; xeon
and dgx1v_xeon 256 GB a socket; dgx_a100_epyc and dgx_h100_xeon 1 TB; grace 480 GB;
d7_p5500_3t84 3.84 TB a drive.
"""

from __future__ import annotations

import pytest

from mcdla import simulate
from mcdla.cli.main import main
from mcdla.config.loader import DATA_ROOT
from mcdla.errors import InputError
from mcdla.hw.tiers import state_tier
from mcdla.hw.topology import load_topology
from mcdla.hw.workload import load_workload
from mcdla.run import load_inputs

TB = 1e12
# topology -> [(kind, stores, capacity of the tier)], nearest first.
TIERS = {
    "single": [],
    "ring": [("memory_node", 8, 8 * 1.28 * TB)],
    "star": [("memory_node", 8, 8 * 1.28 * TB)],
    "ring16": [("memory_node", 16, 16 * 1.28 * TB)],
    "dc": [("host", 2, 2 * 0.256 * TB)],
    "dc4": [("host", 1, 0.256 * TB)],
    "oracle": [("host", 2, 2 * 0.256 * TB)],  # no backing store, but its sockets sit above the PCIe switches
    "dgx1v": [("host", 2, 2 * 0.256 * TB)],
    "dgx_a100": [("host", 2, 2 * TB)],
    "dgx_h100": [("host", 2, 2 * TB)],
    "dgx_h100_4node": [("host", 8, 8 * TB)],
    "dgx_h100_cxl": [("cxl", 8, 8 * 0.512 * TB), ("host", 2, 2 * TB)],
    "dgx_h100_memnodes": [("memory_node", 8, 8 * 1.024 * TB)],
    "dgx_h100_nvme": [("host", 2, 2 * TB), ("nvme", 8, 8 * 3.84 * TB)],
    "gh200_nvl32": [("host", 32, 32 * 0.48 * TB)],
    "gb200_nvl72": [("host", 36, 36 * 0.48 * TB)],
}


@pytest.mark.parametrize("name", sorted(TIERS))
def test_tiers_of_each_shipped_topology(name):
    topo = load_topology(name)
    got = [(t.kind, len(t.stores), t.capacity_bytes) for t in topo.tiers]
    assert [(k, n) for k, n, _ in got] == [(k, n) for k, n, _ in TIERS[name]]
    assert [c for *_, c in got] == pytest.approx([c for *_, c in TIERS[name]])


@pytest.mark.parametrize("name", ["ring", "dc", "dgx_h100_cxl", "dgx_h100_memnodes", "gh200_nvl32"])
@pytest.mark.parametrize("direction", ["offload", "prefetch"])
def test_backing_routes_are_the_default_tiers(name, direction):
    topo = load_topology(name)
    default = topo.tiers[0]
    assert default.kind == topo.default_tier_kind
    for d in topo.devices:
        for policy in ("local", "bw_aware"):
            assert topo.tier_routes(d, default, policy, direction) == topo.backing_routes(d, policy, direction)


def test_other_tiers_serve_each_device_from_its_nearest_stores():
    cxl = load_topology("dgx_h100_cxl")
    host = cxl.tier("host")  # not the backing store: derived from the PCIe tree
    assert host.serves["D0"] == ("CPU0",) and host.serves["D3"] == ("CPU0",) and host.serves["D7"] == ("CPU1",)
    nvme = load_topology("dgx_h100_nvme").tier("nvme")
    # Two drives behind each PCIe switch, shared by its two GPUs.
    assert nvme.serves["D0"] == nvme.serves["D1"] == ("NV0", "NV1")
    assert nvme.serves["D6"] == ("NV6", "NV7")
    assert nvme.links == ("nvme",)
    with pytest.raises(ValueError, match="no 'nvme' tier; its tiers: host"):
        load_topology("dgx_h100").tier("nvme")


def test_nvme_writes_slower_than_it_reads():
    topo = load_topology("dgx_h100_nvme")
    assert topo.ports["NV0/read"].bw_Bps == pytest.approx(7e9)  # D7-P5500 sequential read
    assert topo.ports["NV0/write"].bw_Bps == pytest.approx(4.3e9)  # and write
    (write, _), (read, _) = (topo.tier_routes("D0", "nvme", "bw_aware", w) for w in ("offload", "prefetch"))
    assert write.path == ("D0>SW0:0", "SW0>NV0:0", "NV0/write")
    assert read.path == ("NV0/read", "NV0>SW0:0", "SW0>D0:0")
    # The drive's own latency on top of the two PCIe hops (1 us each).
    assert write.latency_s == pytest.approx(2e-6 + 13e-6) and read.latency_s == pytest.approx(2e-6 + 10e-6)


# -- placement -------------------------------------------------------------------------


def _execution(topology, sets, workload="gpt2_xl"):
    return load_inputs(topology, workload, [("workload.layers", 2), *sets], batch=8)


def test_flags_map_onto_placements():
    topo, _, ex = _execution("dgx_h100_cxl", [("execution.zero", 3), ("execution.offload_optimizer", True)])
    assert state_tier(topo, ex, "activations").kind == "cxl"  # the default tier
    assert state_tier(topo, ex, "optimizer").kind == "cxl"
    assert state_tier(topo, ex, "params") is None and state_tier(topo, ex, "kv") is None
    topo, _, ex = _execution("dgx_h100_nvme", [("execution.zero", 3), ("execution.place.params", "nvme"),
                                               ("training.virtualization", False)])
    assert ex.offload_params and ex.offload_optimizer  # a tier named for the weights is ZeRO-Infinity
    assert state_tier(topo, ex, "optimizer").kind == state_tier(topo, ex, "params").kind == "nvme"
    assert state_tier(topo, ex, "activations") is None


@pytest.mark.parametrize("sets, key, words", [
    ([("execution.zero", 3), ("execution.place.params", "nvme")], "execution.place.params",
     ["dgx_h100 has no nvme tier", "its tiers: host"]),
    ([("execution.place.activations", "cxl")], "execution.place.activations", ["no cxl tier"]),
    ([("execution.zero", 3), ("execution.place.params", "host"), ("execution.place.optimizer", "hbm")],
     "execution.place.params", ["execution.place.optimizer=host"]),
    ([("execution.place.optimizer", "hbm"), ("execution.offload_optimizer", True)], "execution.place.optimizer",
     ["offload_optimizer"]),
    ([("execution.place.weights", "host")], None, ["weights"]),
])
def test_placement_errors_name_the_key_and_the_tiers(sets, key, words):
    with pytest.raises(InputError) as err:
        _execution("dgx_h100", sets)
    if key is not None:
        assert err.value.key == key
    for word in words:
        assert word in str(err.value)


def _zero_infinity(place: str) -> dict:
    return simulate(topology="dgx_h100_nvme", workload="gpt2_xl", batch=8,
                    set={"workload.layers": 2, "execution.zero": 3, "execution.place.params": place,
                         "training.virtualization": False}).to_dict()


def test_zero_infinity_on_nvme_moves_its_bytes_over_the_drives_links():
    result = _zero_infinity("nvme")
    links = result["link_bytes"]
    P = load_workload("gpt2_xl", [("layers", 2)]).params
    # Mixed-precision Adam (ZeRO: 2 + 2 + 12 bytes a parameter), each of the 8 ranks its
    # 1/8 shard. Per parameter of a shard, written to NVMe: the reduced fp16 gradient (2)
    # and, after the device's step, the state and updated weights (12 + 2); read: the
    # weights before each gather, forward and backward (2 + 2), then the state and the
    # gradient for the step (12 + 2).
    write, read = (2 + 12 + 2) * P / 8, (2 + 2 + 12 + 2) * P / 8
    # Two GPUs on each PCIe switch, each striping half over each of the switch's two drives.
    for k in range(8):
        sw = f"SW{k // 2}"
        assert links[f"{sw}>NV{k}"] == pytest.approx(2 * write / 2)
        assert links[f"NV{k}>{sw}"] == pytest.approx(2 * read / 2)
    assert all(v == 0 for pair, v in links.items() if "CPU" in pair)  # nothing else left the devices


def test_zero_infinity_on_nvme_is_slower_than_on_host_memory():
    nvme, host = _zero_infinity("nvme"), _zero_infinity("host")
    assert all(v == 0 for pair, v in host["link_bytes"].items() if "NV" in pair)
    assert nvme["iteration_time_s"] > host["iteration_time_s"]


# -- the execution file --------------------------------------------------------------------

EXEC = """\
description: ZeRO-Infinity on NVMe, small
execution:
  zero: 3
  place: {params: nvme}
training:
  virtualization: false
"""


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "wall_s"}


def test_execution_file_equals_the_same_set_keys(tmp_path):
    path = tmp_path / "exec.yaml"
    path.write_text(EXEC)
    common = dict(topology="dgx_h100_nvme", workload="gpt2_xl", batch=8)
    from_file = simulate(**common, set={"workload.layers": 2}, execution=str(path)).to_dict()
    assert _strip(from_file) == _strip(_zero_infinity("nvme"))
    # A --set after the file overrides it.
    host = simulate(**common, set={"workload.layers": 2, "execution.place.params": "host"},
                    execution=str(path)).to_dict()
    assert _strip(host) == _strip(_zero_infinity("host"))


def test_shipped_execution_files_load():
    from mcdla.config.execution_file import read_execution

    files = sorted((DATA_ROOT / "executions").glob("*.yaml"))
    assert files
    for f in files:
        assert read_execution(f.stem)


@pytest.mark.parametrize("text, where", [
    ("execution:\n  zeroo: 3\n", "execution.zeroo"),
    ("execution:\n  place: {weights: nvme}\n", "execution.place.weights"),
    ("training:\n  checkpoint: sometimes\n", "training.checkpoint"),
    ("trainingg: {}\n", "trainingg"),
    ("execution:\n  zero: 7\n", "execution.zero"),
])
def test_bad_execution_file_exits_2_naming_file_and_key(tmp_path, capsys, text, where):
    path, out = tmp_path / "bad.yaml", tmp_path / "out.json"
    path.write_text(text)
    assert main(["sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64", "--execution", str(path),
                 "--format", "json", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {where}" in err
    assert not out.exists()


def test_a_cluster_of_nvme_nodes_numbers_each_nodes_drives(tmp_path):
    path = tmp_path / "nvcluster.yaml"
    path.write_text("""\
name: nvcluster
description: two DGX H100 with their NVMe drives
device: h100_sxm5
host: {preset: dgx_h100_xeon, sockets: 4}
nvme: d7_p5500_3t84
fabric_switch: {preset: nvswitch3, chips: 4}
spine_switch: quantum2
links: {nvlink: nvlink4, pcie: pcie5_x16, nvme: pcie4_x4, nic: ib_400g}
collective: nccl
generator: {name: cluster, nodes: 2, nic_link: nic,
            node: {generator: switch, devices: 8, links_per_device: 18, pcie_link: pcie,
                   devices_per_pcie_switch: 2, nvme_per_pcie_switch: 2, nvme_link: nvme}}
""")
    topo = load_topology(str(path))
    nvme = topo.tier("nvme")
    assert len(nvme.stores) == 16 and nvme.capacity_bytes == pytest.approx(16 * 3.84 * TB)
    assert nvme.serves["D8"] == ("NV8", "NV9") and nvme.serves["D15"] == ("NV14", "NV15")
    assert topo.tier("host").serves["D15"] == ("CPU3",)


def test_a_drive_is_overridden_as_any_part():
    topo = load_topology("dgx_h100_nvme", [("nvme.write_bw", "2 GB/s"), ("generator.nvme_per_pcie_switch", 1)])
    assert topo.ports["NV0/write"].bw_Bps == pytest.approx(2e9)
    assert topo.tier("nvme").serves["D2"] == ("NV1",)  # one drive a switch now


def test_an_overflowing_store_names_the_other_tiers():
    from mcdla.errors import InfeasibleError

    with pytest.raises(InfeasibleError, match="execution.place"):
        simulate(topology="dgx_h100_nvme", workload="llama2_70b", batch=8,
                 set={"execution.zero": 3, "execution.place.params": "host", "training.checkpoint": "full",
                      "host.socket_mem_capacity": "64 GB"})
