"""``mcdla plan``: the search over parallelism and memory strategies (issue 12)."""

from __future__ import annotations

import json

import pytest

from mcdla.cli.main import main
from mcdla.run import simulate
from mcdla.sweep.plan import candidates, largest, plan


def test_candidates_divide_the_design_and_the_batch():
    cands = candidates(8, 32, ("offload_all",))
    assert {c.tensor_parallel for c in cands} == {1, 2, 4, 8}
    assert not [c for c in cands if c.tensor_parallel == 8 and c.zero]  # dp = 1: nothing to shard
    assert {c.tensor_parallel for c in candidates(8, 6, ())} == {4, 8}  # dp must divide the batch


def test_the_best_plan_is_what_mcdla_sim_gives_for_its_settings():
    rows = plan("ring", "gpt2", batch=32, simulate=4)
    feasible = [r for r in rows if r.feasible]
    assert len(feasible) == 4
    times = [r.result["iteration_time_s"] for r in feasible]
    assert times == sorted(times)
    best = feasible[0]
    again = simulate("ring", "bw_aware", "gpt2", "data", 32, best.candidate.sets())
    assert again["iteration_time_s"] == best.result["iteration_time_s"]
    # Model FLOP/s per device: 6 x forward MACs... reported against the device's peak.
    assert 0 < best.result["peak_fraction"] < 1


def test_a_model_state_over_device_memory_is_infeasible_without_simulating(capsys):
    assert main(["plan", "--workload", "gpt3_175b", "--topology", "dc", "--batch", "8", "--quiet",
                 "--format", "json", "--all"]) == 2  # does not fit: a bad input
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["feasible"] is False for r in rows)
    on_device = [r for r in rows if not r["offload_params"]]
    # 175B x 16 B / 8 is far over 16 GB, and even with ZeRO-Offload its fp16 weights and
    # gradients are 87 GB a device: refused from the weights alone.
    assert on_device and all("model state" in r["reason"] for r in on_device)
    # ZeRO-Infinity would keep 2.8 TB in the hosts' 512 GB: refused as the run starts (or,
    # keeping every feature map on the device, by the analytic peak before it).
    infinity = [r["reason"] for r in rows if r["offload_params"]]
    assert infinity and all("backing store" in r or "keeping every feature map" in r for r in infinity)
    assert any("backing store" in r for r in infinity)


def test_devices_must_match_the_design(capsys):
    assert main(["plan", "--workload", "gpt2", "--topology", "ring", "--batch", "8", "--devices", "16"]) == 2
    assert "--devices" in capsys.readouterr().err


def test_plans_fit_what_plain_data_parallelism_cannot_keep_on_the_device():
    rows = plan("dc", "gpt2_xl", batch=32, simulate=4)
    best = next(r for r in rows if r.feasible)
    assert best.result["device_mem_peak_bytes"] <= 16 * (1 << 30)
    assert best.result["iteration_time_s"] < 1.0  # without offloading over DC-DLA's PCIe
    # Plain data parallelism keeping every feature map of GPT-2 XL on a 16 GB device does not fit.
    flat = [r for r in rows if r.candidate.pipeline_parallel == 1 and r.candidate.tensor_parallel == 1
            and r.candidate.offload == "none" and r.candidate.checkpoint == "none" and r.feasible is not None]
    assert flat and all(r.feasible is False for r in flat)


def test_family_members_have_their_papers_sizes():
    from mcdla.config.family import read_family
    from mcdla.hw.workload import load_workload

    expected = {"gpt3": [0.125, 0.35, 0.76, 1.3, 2.7, 6.7, 13, 175], "llama2": [7, 13, 70]}
    for name, sizes in expected.items():
        family = read_family(name)
        got = [load_workload(family.workload, list(m.items())).params / 1e9 for m in family.members]
        assert got == pytest.approx(sizes, rel=0.05)


def test_largest_model_within_a_time_budget_is_larger_on_memory_centric_design(tmp_path):
    family = tmp_path / "three.yaml"
    family.write_text("name: three\nworkload: gpt3_175b\nmembers:\n"
                      "  - {name: gpt3_1.3b, layers: 24, hidden: 2048, heads: 16, ffn: 8192}\n"
                      "  - {name: gpt3_13b, layers: 40, hidden: 5120, heads: 40, ffn: 20480}\n")
    found = {}
    for design in ("ring", "dc"):
        rows = largest(design, str(family), batch=16, budget_s=3.0, simulate=1)
        found[design] = [r.name for r in rows if r.trains]
    # GPT-3 13B needs its optimizer state and feature maps off the device: over the
    # memory-nodes it trains within 3 s an iteration, over DC-DLA's PCIe it does not.
    assert found == {"ring": ["gpt3_1.3b", "gpt3_13b"], "dc": ["gpt3_1.3b"]}


def test_largest_cli_reports_the_largest_that_trains(tmp_path, capsys):
    family = tmp_path / "one.yaml"
    family.write_text("name: one\nworkload: gpt2\nmembers:\n  - {name: tiny, layers: 2}\n")
    assert main(["plan", "--largest", str(family), "--topology", "ring", "--batch", "8", "--quiet",
                 "--time-budget", "1 s"]) == 0
    assert "largest that trains: tiny" in capsys.readouterr().err


def test_llm_memory_experiment_runs_plan_points_and_draws(tmp_path):
    from mcdla.config.experiment import load_experiment
    from mcdla.plots.figures import render
    from mcdla.sweep.plan import plan_point
    import pandas as pd

    experiment = load_experiment("llm_memory")
    assert experiment.kind == "plan" and len(experiment.points) == 11 * 6
    rows = []
    for design in (("ring", "bw_aware"), ("dc", "bw_aware")):
        for model in ("gpt3/gpt3_125m", "gpt3/gpt3_175b"):
            result = plan_point({"topology": design[0], "policy": design[1], "model": model, "batch": 16,
                                 "simulate": 1})
            rows.append({"topology": design[0], "policy": design[1], "model": model, "status": "ok", **result})
    table = pd.DataFrame(rows)
    # GPT-3 175B's 2.8 TB of model state fits the eight memory-nodes of MC-DLA(B) (ZeRO-Infinity),
    # not DC-DLA's 512 GB of host memory.
    assert list(table["trains"]) == [True, True, True, False]
    assert "backing store" in table["reason"].iloc[3]
    paths = render("llm_memory", table, {}, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def test_a_plan_point_names_an_unknown_member():
    from mcdla.errors import InputError
    from mcdla.sweep.plan import plan_point

    with pytest.raises(InputError, match="no member 'gpt3_1t'"):
        plan_point({"topology": "ring", "model": "gpt3/gpt3_1t", "batch": 16})


def test_report_sections_of_the_llm_studies():
    from mcdla.sweep.report import _llm_section, _section_2026
    from tests.test_plots import llm_table, table_2026

    llm = "\n".join(_llm_section(llm_table()))
    assert "| gpt3_13b | 13 B |" in llm and "—" in llm  # 70B fits only the oracle
    assert "- DC-DLA: gpt3: gpt3_13b" in llm and "llama2: none" in llm
    table = table_2026()
    table["topology"] = table["topology"].replace({"dc": "dgx_h100"})
    table["plan"] = "tp1 pp1x1 zero3 none"
    study = "\n".join(_section_2026(table))
    assert "1.00×" in study and "tier 50 GB/s" in study and "tok/s" in study


def test_a_family_members_bad_key_names_the_family_and_member(tmp_path, capsys):
    family = tmp_path / "bad.yaml"
    family.write_text("name: bad\nworkload: gpt2\nmembers:\n  - {name: tiny, layerz: 2}\n")
    assert main(["plan", "--largest", str(family), "--topology", "ring", "--batch", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "family bad, member tiny" in err and "layerz: unknown key" in err


def test_scale_out_section_reads_weak_and_strong_scaling():
    from mcdla.sweep.report import _scale_out_section
    from tests.test_plots import scale_table

    text = "\n".join(_scale_out_section(scale_table()))
    assert "| 8 | 1,280 | 1.00x | 1,164 | 1.00x |" in text


@pytest.mark.parametrize("given, expected", [([], 4), (["--simulate", "16"], 16), (["--simulate", "2"], 2)])
def test_largest_simulates_what_is_asked(monkeypatch, tmp_path, given, expected):
    """--simulate 16 given explicitly is 16 (it was taken for the default and made 4)."""
    import mcdla.sweep.plan as plan_module

    seen = {}

    def fake_largest(*args, simulate, **kwargs):
        seen["simulate"] = simulate
        return []

    monkeypatch.setattr(plan_module, "largest", fake_largest)
    main(["plan", "--largest", "gpt3", "--topology", "ring", "--batch", "8", "--quiet", *given])
    assert seen["simulate"] == expected


def test_fabric_section_reads_each_fabric_against_a_switch_per_rail():
    import pandas as pd

    from mcdla.sweep.report import _fabric_section

    table = pd.DataFrame([{"label": label, "devices": 1024, "iteration_time_s": t, "busy_s.compute": 0.4,
                           "status": "ok"} for label, t in (("rails", 1.2), ("nic2", 1.8))])
    text = "\n".join(_fabric_section(table))
    assert "(1,024 GPUs)" in text and "on 2 cluster fabrics" in text
    assert "| a switch per rail | 1,200 ms | 1.000x | 400 ms | 800 ms |" in text
    assert "| 2 NICs a node (4 GPUs each) | 1,800 ms | 1.500x | 400 ms | 1,400 ms |" in text


def test_a_plan_given_a_pipeline_schedule_applies_it_to_the_pipeline_candidates():
    """--set training.schedule=gpipe is for the pipeline candidates; the others run
    without a schedule (it was refused for all)."""
    from mcdla.sweep.plan import plan

    rows = plan("dgx_h100", "gpt2", batch=32, sets=[("training.schedule", "gpipe")], simulate=2)
    assert rows
