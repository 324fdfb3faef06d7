"""Bugs a newcomer hit in the first hour (issue 22): each test fails without its fix."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main


def run_json(capsys, *argv):
    """``mcdla ARGV --format json``: (exit status, parsed stdout or None, stderr)."""
    code = main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_model_parallel_batch_need_not_divide_over_devices(capsys):
    # Every device holds the whole batch in model-parallel training: 12 over 8 devices runs.
    code, result, err = run_json(capsys, "sim", "--topology", "dc", "--workload", "alexnet",
                                 "--parallel", "model", "--batch", "12")
    assert code == 0, err
    assert result["batch"] == 12 and result["parallel"] == "model"


@pytest.mark.parametrize("name", ["gpt2", "llama2_7b", "bert_large"])
def test_dropout_on_every_transformer_template(name):
    # One dropout after the embeddings and one in each residual branch (attention, MLP),
    # each feeding its branch's residual add.
    from mcdla.hw.workload import load_workload

    work = load_workload(name, [("dropout", True)])
    kinds = [layer.kind for layer in work.layers]
    blocks = sum(1 for layer in work.layers if layer.name.endswith("/res1"))
    assert blocks > 0 and kinds.count("dropout") == 2 * blocks + 1
    for layer in work.layers:
        if layer.name.endswith(("/res1", "/res2")):
            assert work.layers[layer.inputs[0]].kind == "dropout", layer.name


def _family(tmp_path):
    family = tmp_path / "one.yaml"
    family.write_text("name: one\nworkload: gpt2\nmembers:\n  - {name: tiny, layers: 2}\n")
    return str(family)


def test_plan_searches_only_what_set_fixes(capsys):
    # Each fixed search axis holds on every candidate, simulated or not.
    code, rows, err = run_json(capsys, "plan", "--workload", "gpt2", "--topology", "ring", "--batch", "32",
                               "--simulate", "1", "--all", "--quiet", "--set", "execution.tensor_parallel=2",
                               "--set", "training.checkpoint=full", "--set", "training.virtualization=false")
    assert code == 0, err
    assert rows and {(r["tensor_parallel"], r["checkpoint"], r["memory"]) for r in rows} == {(2, "full", "none")}
    assert any(r["feasible"] for r in rows)


def test_plan_largest_keeps_the_fixed_axes(tmp_path, capsys):
    code, rows, err = run_json(capsys, "plan", "--largest", _family(tmp_path), "--topology", "ring", "--batch", "8",
                               "--simulate", "1", "--quiet", "--set", "execution.zero=2",
                               "--set", "execution.offload=offload_all")
    assert code == 0, err  # (unfixed, the best is ZeRO-1 with capacity_aware)
    assert rows[0]["trains"] and (rows[0]["zero"], rows[0]["memory"]) == (2, "offload_all")


@pytest.mark.parametrize("fixed, named", [
    ("execution.tensor_parallel=16", "execution.tensor_parallel=16"),  # beyond the searched degrees
    ("execution.offload=nowhere", "execution.offload"),
    ("execution.zero=x", "execution.zero"),
    ("workload.layers=4", "workload.layers"),  # the family sets it per member
])
def test_plan_refuses_a_fixed_option_it_cannot_honour(tmp_path, capsys, fixed, named):
    code = main(["plan", "--largest", _family(tmp_path), "--topology", "ring", "--batch", "8", "--quiet",
                 "--set", fixed])
    err = capsys.readouterr().err
    assert code == 2 and named in err, err


CLUSTER = {"name": "cl", "description": "NVLink domains on rails", "device": "h100_sxm5",
           "fabric_switch": {"preset": "nvswitch3", "chips": 4}, "spine_switch": "quantum2",
           "links": {"nvlink": "nvlink4", "nic": "ib_400g"},
           "generator": {"name": "cluster", "nodes": 3, "devices_per_node": 4, "links_per_device": 4}}


@pytest.mark.parametrize("nodes", [3, 5])
def test_a_cluster_of_an_odd_number_of_switched_nodes_closes_its_rings(tmp_path, nodes):
    from collections import Counter

    import yaml

    from mcdla.hw.topology import load_topology

    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(dict(CLUSTER, generator=dict(CLUSTER["generator"], nodes=nodes))))
    topo = load_topology(str(path))
    devices = set(topo.devices)
    assert len(devices) == 4 * nodes and len(topo.ring_cycles) == 4
    for cycle in topo.ring_cycles:
        ranks = [n for n in cycle if n in devices]
        assert sorted(ranks) == sorted(devices)  # every device once
        for k, node in enumerate(cycle):  # a hop between nodes is over one rail: place to same place
            if node.startswith("SP"):
                a, b = int(cycle[k - 1][1:]), int(cycle[(k + 1) % len(cycle)][1:])
                assert a % 4 == b % 4 == int(node[2:]) and a // 4 != b // 4
    # no two rings share a channel (link direction)
    assert set(Counter(c for r in topo.rings for c in r.channels).values()) == {1}


def test_an_odd_cluster_simulates_as_every_rank_does(tmp_path, capsys):
    import yaml

    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(CLUSTER))
    times = []
    for extra in ([], ["--exact"]):
        code, result, err = run_json(capsys, "sim", "--topology", str(path), "--workload", "gpt2", "--batch", "12",
                                     "--set", "training.virtualization=false", "--set", "workload.layers=2", *extra)
        assert code == 0, err
        times.append(result["iteration_time_s"])
    assert times[0] == pytest.approx(times[1], rel=1e-9)


def test_collective_takes_set_for_the_topology(capsys):
    base = ["collective", "--op", "all_reduce", "--size", "1 MB", "--topology", "dgx_h100_4node"]
    code, result, err = run_json(capsys, *base, "--set", "generator.nodes=2", "--set", "host.sockets=4")
    assert code == 0, err
    assert result["ranks"] == 16  # 2 nodes of 8, not the file's 4
    code, slow, err = run_json(capsys, *base, "--set", "generator.nodes=2", "--set", "host.sockets=4",
                               "--set", "links.nic.bw=10 GB/s")
    assert code == 0, err
    assert slow["time_s"] > result["time_s"]


@pytest.mark.parametrize("where, item, named", [
    (["--topology", "dgx_h100_4node"], "training.chunk=4096", "--set: training.* applies to a training run"),
    (["--topology", "dgx_h100_4node"], "generator.colour=red", "generator.colour: unknown key"),
    (["--ring", "4"], "links.nvlink.bw=1 GB/s", "--set: applies to --topology"),
])
def test_collective_refuses_a_set_it_cannot_apply(capsys, where, item, named):
    assert main(["collective", "--op", "all_reduce", "--size", "1 MB", *where, "--set", item]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv, key", [
    (["sim", "--set", "training.bucket=25"], "training.bucket"),
    (["sim", "--set", "training.chunk=512"], "training.chunk"),
    (["sim", "--set", "training.bucket='1000'"], "training.bucket"),
    (["collective", "--op", "all_reduce", "--size", "8 MB", "--ring", "4", "--chunk", "64"], "--chunk"),
])
def test_a_bare_small_bucket_or_chunk_is_a_missing_unit(capsys, argv, key):
    assert main([*argv, "--topology", "dc"] if argv[0] == "sim" else argv) == 2
    err = capsys.readouterr().err
    assert key in err and "has no unit" in err and "MiB" in err, err


@pytest.mark.parametrize("value", ["25 B", "2048", "25 MiB"])
def test_a_bucket_with_a_unit_or_of_a_kibibyte_runs(capsys, value):
    code, result, err = run_json(capsys, "sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64",
                                 "--set", f"training.bucket={value}")
    assert code == 0, err


def _refusal(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_model_state_that_does_not_fit_is_a_bad_input_said_humanely(capsys):
    code, out, err = _refusal(capsys, ["sim", "--workload", "gpt3_175b", "--topology", "dgx_h100", "--batch", "8"])
    assert code == 2 and out == ""
    assert "2.79 TB, over its 80 GB of memory" in err and "e+" not in err
    assert "execution.zero=3" in err and "offload" in err and "more devices" in err and "mcdla plan" in err


def test_feature_maps_that_do_not_fit_name_sizes_and_the_way_out(capsys):
    code, out, err = _refusal(capsys, ["sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64",
                                       "--set", "training.virtualization=false", "--set", "device.hbm_capacity=510 MB"])
    assert code == 2 and out == ""
    assert "cannot fit" in err and "510 MB of memory" in err and "bytes" not in err and "e+" not in err
    assert "training.checkpoint=full" in err and "mcdla plan" in err


def test_plan_with_nothing_that_fits_exits_2_saying_why(capsys):
    code, out, err = _refusal(capsys, ["plan", "--workload", "gpt3_175b", "--topology", "dc", "--batch", "8",
                                       "--quiet"])
    assert code == 2 and out == ""
    assert "no way to train gpt3_175b at batch 8 fits dc" in err and "TB" in err and "e+" not in err


def test_plan_largest_with_nothing_that_trains_exits_2(tmp_path, capsys):
    code, out, err = _refusal(capsys, ["plan", "--largest", _family(tmp_path), "--topology", "ring", "--batch", "8",
                                       "--quiet", "--simulate", "1", "--time-budget", "1 us"])
    assert code == 2 and out == ""
    assert "no member of" in err and "over the budget of 1 us" in err


def _heading(capsys, *argv):
    assert main(["sim", *argv]) == 0
    return capsys.readouterr().out.splitlines()[3:5]


def test_sim_heading_names_a_policy_only_where_memory_nodes_place_pages(capsys):
    run, offload = _heading(capsys, "--topology", "dc", "--workload", "alexnet", "--batch", "64")
    assert run == "alexnet, data-parallel, batch 64, on dc (8 devices)" and "policy" not in run
    assert offload.startswith("feature maps: ") and "offloaded (offload_all policy)" in offload
    run, _ = _heading(capsys, "--topology", "ring", "--workload", "alexnet", "--batch", "64")
    assert run.endswith("(8 devices, bw_aware policy)")


def test_sim_heading_gives_the_parallel_layout(capsys):
    run, offload = _heading(capsys, "--topology", "ring", "--workload", "gpt2", "--batch", "16",
                            "--set", "workload.layers=2", "--set", "execution.tensor_parallel=2",
                            "--set", "execution.pipeline_parallel=2", "--set", "training.micro_batches=4",
                            "--set", "execution.zero=1", "--set", "training.virtualization=false")
    assert run.startswith("gpt2, tp 2 x pp 2 x dp 2, 4 micro-batches, ZeRO-1, batch 16, on ring")
    assert offload == "feature maps: all kept on the device"


@pytest.mark.parametrize("argv, option", [
    (["sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64", "--trace", "{}/t.json"], "--trace"),
    (["layers", "--workload", "alexnet", "--plot", "{}/r.svg"], "--plot"),
])
def test_a_command_names_the_files_its_options_wrote(tmp_path, capsys, argv, option):
    argv = [a.format(tmp_path) for a in argv]
    assert main(argv) == 0
    path = argv[argv.index(option) + 1]
    assert f"wrote {path} ({option})" in capsys.readouterr().err


PAPER_DESIGNS = ("dc", "dc1", "dc4", "dc16", "hc", "star", "ring", "ring16", "oracle", "single", "mcdla_ring_cluster",
                 "mcdla_scaleout", "dc_cluster")
REAL_MACHINES = ("dgx1v", "dgx_a100", "dgx_h100", "dgx_h100_4node", "dgx_h100_cxl", "dgx_h100_memnodes",
                 "gh200_nvl32", "gb200_nvl72")


def test_each_design_names_its_offload_policy():
    # The paper's designs keep the paper's offload-all; real machines offload what does not fit.
    from mcdla.hw.topology import load_topology

    assert {n: load_topology(n).offload for n in PAPER_DESIGNS} == dict.fromkeys(PAPER_DESIGNS, "offload_all")
    assert {n: load_topology(n).offload for n in REAL_MACHINES} == dict.fromkeys(REAL_MACHINES, "capacity_aware")


def test_a_real_machine_offloads_only_what_does_not_fit_by_default(capsys):
    base = ["sim", "--topology", "dgx1v", "--workload", "resnet50", "--batch", "64"]
    code, default, err = run_json(capsys, *base)
    assert code == 0, err
    assert default["offload"] == "capacity_aware" and default["offloaded_maps"] == 0
    code, kept, err = run_json(capsys, *base, "--set", "training.virtualization=false")
    assert code == 0, err
    assert default["iteration_time_s"] == pytest.approx(kept["iteration_time_s"], rel=1e-9)
    code, paper, err = run_json(capsys, *base, "--set", "execution.offload=offload_all")
    assert code == 0, err  # the paper's stress policy, asked for: every map moves
    assert paper["offload"] == "offload_all" and paper["offloaded_maps"] > 0
    assert paper["iteration_time_s"] > 2 * default["iteration_time_s"]


def test_a_paper_design_offloads_every_map_by_default(capsys):
    code, result, err = run_json(capsys, "sim", "--topology", "dc", "--workload", "alexnet", "--batch", "64")
    assert code == 0, err
    assert result["offload"] == "offload_all" and result["offloaded_maps"] > 0


def test_a_design_file_with_an_unknown_offload_policy_names_the_key(tmp_path, capsys):
    import yaml

    from mcdla.config.loader import read_yaml, find_input

    doc = read_yaml(find_input("dc", "topologies", "topology"))
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(dict(doc, offload="some_of_them")))
    assert main(["sim", "--topology", str(path), "--workload", "alexnet", "--batch", "64"]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml" in err and "offload" in err and "some_of_them" in err, err
