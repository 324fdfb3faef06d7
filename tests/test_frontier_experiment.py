"""Experiment frontier_scale (issue 27): its file loads, its points are the 3D layouts
its comments describe, from 1,024 to 131,072 GPUs, and the report reads the results
table (tokens/s per GPU, each axis's share, the fabric's bytes per tier)."""

from __future__ import annotations

import pandas as pd
import pytest

from mcdla.config.experiment import load_experiment

PRESET_NODES = 13056  # h100_100k's generator.nodes, where a point keeps it


def _layouts(name):
    """Per point: (label, GPUs, data-parallel replicas, batch, micro-batches)."""
    experiment = load_experiment(name)
    rows = []
    for point in experiment.points:
        gpus = 8 * point.get("generator.nodes", PRESET_NODES)
        tp, pp = point["execution.tensor_parallel"], point["execution.pipeline_parallel"]
        assert gpus % (tp * pp) == 0, point
        rows.append((point["label"], gpus, gpus // (tp * pp), point["batch"], point["training.micro_batches"]))
    return rows


def test_reproduce_runs_frontier_scale():
    from mcdla.cli.reproduce import EXPERIMENTS

    assert "frontier_scale" in EXPERIMENTS


# The published layouts the points follow (the experiment files cite them): per model,
# (tensor, pipeline, interleaved chunks per stage, recompute, sequences per replica in
# the weak series).
PUBLISHED = {"gpt3": (4, 8, 12, "selective", 8), "llama": (8, 16, 8, "full", 16)}


def test_points_run_the_published_layouts_weak_growing_the_batch_and_strong_fixing_it():
    name = "frontier_scale"
    experiment = load_experiment(name)
    strong = {}
    for point, (label, gpus, replicas, batch, micro) in zip(experiment.points, _layouts(name)):
        model = label.split("+")[-2]
        tp, pp, chunks, recompute, weak = PUBLISHED[model]
        assert (point["execution.tensor_parallel"], point["execution.pipeline_parallel"]) == (tp, pp)
        assert point["training.schedule"] == "interleaved" and point["training.virtual_stages"] == chunks
        assert point.get("training.checkpoint", "none") == (recompute if not label.startswith("mc+") else "none")
        assert point["execution.zero"] == 1 and point["execution.sequence_parallel"]
        assert batch == micro * replicas  # micro-batches of one sequence, as both runs ran them
        if label.endswith("+weak"):
            assert micro == weak
        else:
            strong.setdefault(model, set()).add(batch)
    assert all(len(batches) == 1 for batches in strong.values())


def test_the_published_runs_own_layouts_are_points():
    """NeMo's GPT-3 recipe: 1,024 GPUs, a batch of 2,048 (64 micro-batches per replica);
    Llama 3's Table 4: 16,384 GPUs, 16 sequences a replica, and 8,192, 32 a replica."""
    layouts = _layouts("frontier_scale")
    assert ("gpt3+strong", 1024, 32, 2048, 64) in layouts
    assert ("llama+weak", 16384, 128, 2048, 16) in layouts and ("llama+strong", 8192, 64, 2048, 32) in layouts


def test_each_series_spans_its_sizes_weak_to_131072_and_strong_over_the_published_batch():
    """Issue 27: 1,024 to 131,072 GPUs, weak and strong, the memory-centric variant beside."""
    sizes = {}
    for label, gpus, *_ in _layouts("frontier_scale"):
        sizes.setdefault(label, []).append(gpus)
    assert sizes == {"gpt3+weak": [1024 * 2**k for k in range(8)], "gpt3+strong": [1024, 2048, 4096, 8192],
                     "llama+weak": [1024, 2048, 4096, 8192, 16384, 131072], "llama+strong": [4096, 8192, 16384],
                     "mc+llama+weak": [1024, 4096, 16384]}


def test_the_131072_gpu_points_rail_cores_have_the_ports_their_pods_need():
    """64 pods of 2,048 GPUs: each rail's core takes 32 uplinks from each of its 64 pod
    spines, 2,048 ports; h100_100k's 26 chips of 64 ports have 1,664."""
    largest = [p for p in load_experiment("frontier_scale").points if p["generator.nodes"] == 16384]
    assert len(largest) == 2 and all(64 * p["spine_switch.chips"] >= 64 * 32 for p in largest)


@pytest.mark.slow
def test_every_point_loads_before_anything_runs():
    """The sweep's own check (every topology and workload loads; nothing is simulated):
    about 90 s and 4-5 GB here, the 131,072-GPU fat tree's graph built once."""
    from mcdla.sweep.engine import _check_points

    _check_points(load_experiment("frontier_scale"))


def test_every_point_up_to_4096_gpus_loads_before_anything_runs():
    """The same check over the points of up to 4,096 GPUs (the larger ones, to 131,072,
    are the slow test above)."""
    import dataclasses

    from mcdla.sweep.engine import _check_points

    experiment = load_experiment("frontier_scale")
    small = tuple(p for p in experiment.points if p["generator.nodes"] <= 512)
    assert len(small) == 12  # GPT-3 weak and strong and Llama weak 3 sizes each, mc 2, Llama strong 1
    _check_points(dataclasses.replace(experiment, points=small))


def _table():
    rows = []
    for label, gpus, batch, time_s in (("gpt3+weak", 1024, 128, 1.0), ("gpt3+weak", 8192, 1024, 1.25),
                                       ("mc+llama+weak", 1024, 128, 8.0)):
        rows.append({"label": label, "workload": "llama3_405b" if "llama" in label else "gpt3_175b",
                     "devices": gpus, "batch": batch, "status": "ok", "iteration_time_s": time_s,
                     "layout.micro_batches": 16, "comm_s.tp": 0.5, "comm_s.pp": 0.25, "comm_s.dp": 0.1})
    rows.append({"label": "gpt3+strong", "workload": "gpt3_175b", "devices": 1024, "batch": 384, "status": "error"})
    table = pd.DataFrame(rows)
    # The 8,192-GPU run counted its links per class: 4 leaf-to-pod links each way of 1 TB
    # on average, 2 pod-to-core links of 0.5 TB, and NVLink (not a fabric tier).
    for name, count, mean in (("spine1>spine2:isl", 4, 1e12), ("spine2>spine1:isl", 4, 1e12),
                              ("spine2>spine3:isl", 2, 0.5e12), ("device>fabric1:nvlink", 8, 9e12)):
        table[f"link_classes.{name}.count"] = [float("nan"), count, float("nan"), float("nan")]
        table[f"link_classes.{name}.mean"] = [float("nan"), mean, float("nan"), float("nan")]
    # The busiest leaf-to-pod link up 25 GB and down 12.5 GB at 50 GB/s (a 400G port) in the
    # 1.25 s iteration: busy 40 % and 20 % of it. The pod-to-core classes give no bandwidth.
    for name, most, bw in (("spine1>spine2:isl", 25e9, 50e9), ("spine2>spine1:isl", 12.5e9, 50e9),
                           ("spine2>spine3:isl", 1e12, float("nan"))):
        table[f"link_classes.{name}.max"] = [float("nan"), most, float("nan"), float("nan")]
        table[f"link_classes.{name}.bw_Bps"] = [float("nan"), bw, float("nan"), float("nan")]
    return table


def test_rows_read_design_model_scaling_and_tokens_per_gpu():
    from mcdla.metrics.compare import frontier_rows

    data = frontier_rows(_table())
    assert list(data["design"]) == ["fat", "fat", "mc"] and list(data["model"]) == ["gpt3", "gpt3", "llama"]
    # GPT-3: 2,048-token sequences; Llama 3.1: 8,192.
    assert data["tokens_per_s"].tolist() == pytest.approx([128 * 2048 / 1.0 / 1024, 1024 * 2048 / 1.25 / 8192,
                                                           128 * 8192 / 8.0 / 1024])
    assert data["share_tp"].tolist() == pytest.approx([0.5, 0.4, 0.0625])


def test_tier_bytes_sum_both_directions_and_a_run_that_listed_links_has_none():
    from mcdla.metrics.compare import tier_bytes

    table = _table()
    assert tier_bytes(table.iloc[1]) == pytest.approx({"spine1-spine2": 8e12, "spine2-spine3": 1e12,
                                                       "device-fabric1": 72e12})
    assert tier_bytes(table.iloc[0]) == {}


def test_a_tiers_busiest_link_is_its_most_bytes_at_its_rate_over_the_iteration():
    from mcdla.metrics.compare import tier_busy

    table = _table()
    # The larger direction (40 %, not 20 %); the pod-to-core tier has no bandwidth: left out.
    assert tier_busy(table.iloc[1]) == pytest.approx({"spine1-spine2": 0.4})
    assert tier_busy(table.iloc[0]) == {}


def test_the_section_shows_each_run_and_reads_scaling_from_the_table():
    from mcdla.sweep.report import _frontier_section

    text = "\n".join(_frontier_section(_table()))
    # 1,024 sequences of 2,048 tokens of GPT-3 175B: 2.26e18 FLOPs as Megatron-LM counts
    # them (12 B s l h^2 (2 + s/h + 4 + V/(2 l h)), l 96, h 12,288, V 50,257) in 1.25 s on
    # 8,192 GPUs: 220 TFLOP/s each, 47 % under the README's 42 % of 989 (415 TFLOP/s).
    assert "| GPT-3 175B | weak | fat tree | 8,192 | 1,024 | 16 | 1.25 s | 205 | 220 | -47% |" in text
    assert "Llama 3.1 405B 400 TFLOP/s per GPU" in text
    # The memory-centric variant has no published counterpart: 128 sequences of 8,192 of
    # Llama 3.1 405B in 8 s on 1,024 GPUs are 336 TFLOP/s each, shown without an error.
    assert "| Llama 3.1 405B | weak | fat tree + memory-nodes | 1,024 | 128 | 16 | 8.00 s | 128 | 336 | — |" in text
    assert "spine1-spine2 8.0 TB (40% busy), spine2-spine3 1.0 TB |" in text and "device-fabric1" not in text
    assert "fat tree + memory-nodes" in text
    # 256 tokens/s per GPU at 1,024 GPUs, 204.8 at 8,192: 80 %.
    assert "GPT-3 175B weak on the fat tree: 205 tokens/s per GPU at 8,192 GPUs, 80% of its 256 at 1,024" in text
