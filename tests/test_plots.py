"""Every figure renders, as non-empty PNG and SVG, from a small hand-made results table."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mcdla.cli.main import main
from mcdla.metrics.power import memory_node_power
from mcdla.config.experiment import FIGURES
from mcdla.plots.figures import render
from mcdla.sweep import store

DESIGNS = [("dc", "bw_aware", 4.0), ("hc", "bw_aware", 3.0), ("star", "bw_aware", 1.4),
           ("ring", "local", 1.2), ("ring", "bw_aware", 1.1), ("oracle", "bw_aware", 1.0)]


def sim_table(batches=(512,), designs=DESIGNS) -> pd.DataFrame:
    rows = []
    for parallel, workload, batch, (topology, policy, slow) in itertools.product(
            ("data", "model"), ("alexnet", "rnn_gru"), batches, designs):
        time_s = slow * batch / 512 * (1.5 if workload == "rnn_gru" else 1.0)
        rows.append({"topology": topology, "policy": policy, "workload": workload, "parallel": parallel,
                     "batch": batch, "iteration_time_s": time_s, "busy_s.compute": 1.0,
                     "busy_s.sync": 0.2 * slow, "busy_s.virtualization": slow - 1.0,
                     "cpu_mem_bw_Bps.avg": 5e9 * slow, "cpu_mem_bw_Bps.peak": 9e9 * slow,
                     "link_bytes.D0>M0": 1e9 / slow, "status": "ok"})
    return pd.DataFrame(rows)


def fig09_table() -> pd.DataFrame:
    rows = [{"op": op, "size": "8 MB", "ring": n, "time_s": 1e-3 * (1 + 0.01 * n), "status": "ok"}
            for op in ("all_reduce", "broadcast") for n in (2, 4, 8, 16)]
    return pd.DataFrame(rows)


def scalability_table() -> pd.DataFrame:
    rows = []
    for virt, workload, (topology, devices) in itertools.product(
            (True, False), ("alexnet", "vgg_e"), (("dc1", 1), ("dc4", 4), ("dc", 8))):
        speed = devices if not virt else 1 + devices / 3
        rows.append({"topology": topology, "devices": devices, "workload": workload, "parallel": "data",
                     "batch": 512, "training.virtualization": virt, "iteration_time_s": 8.0 / speed, "status": "ok"})
    return pd.DataFrame(rows)


def power_table() -> pd.DataFrame:
    rows = []
    for label, size, watts in (("8 GB RDIMM", "8 GB", 2.9), ("128 GB LRDIMM", "128 GB", 12.7)):
        result = memory_node_power({"memory_node.dimm_capacity": size, "memory_node.dimm_power_W": watts})
        rows.append({"label": label, **result, "status": "ok"})
    return pd.DataFrame(rows)


def pcie_table() -> pd.DataFrame:
    frame = sim_table(designs=[("dc", "bw_aware", 4.0), ("dc", "bw_aware", 3.0), ("ring", "bw_aware", 1.1)])
    frame["label"] = ["dc", "dc+pcie4", "ring+bw_aware"] * (len(frame) // 3)
    return frame


def llm_table() -> pd.DataFrame:
    rows = []
    for (topology, policy, slow), (model, params) in itertools.product(
            DESIGNS, (("gpt3/gpt3_125m", 1.25e8), ("gpt3/gpt3_13b", 1.3e10), ("llama2/llama2_70b", 7e10))):
        trains = params < 5e10 or topology == "oracle"
        rows.append({"topology": topology, "policy": policy, "model": model, "family": model.partition("/")[0],
                     "params": params, "trains": trains, "iteration_time_s": slow * params / 1e9 if trains else None,
                     "tokens_per_s": 1e9 / (slow * params) if trains else None, "status": "ok"})
    return pd.DataFrame(rows)


def table_2026() -> pd.DataFrame:
    frame = llm_table()
    frame["busy_s.compute"] = frame["iteration_time_s"] * 0.6
    frame["backing_Bps"] = 5e10
    frame["devices"] = 8
    return frame


def scale_table() -> pd.DataFrame:
    rows = []
    for design, scaling, devices in itertools.product(("ring", "cluster"), ("weak", "strong"), (8, 32, 128)):
        batch = 64 * devices if scaling == "weak" else 1024
        rows.append({"label": f"{design}+{scaling}", "topology": "ring16", "devices": devices, "batch": batch,
                     "iteration_time_s": 0.05 * batch / devices / 64 * (1.1 if design == "cluster" else 1.0),
                     "status": "ok"})
    return pd.DataFrame(rows)


def fabric_table() -> pd.DataFrame:
    return pd.DataFrame([{"label": label, "topology": "dgx_h100_4node", "iteration_time_s": t, "busy_s.compute": 0.4,
                          "status": "ok"} for label, t in (("rails", 1.2), ("leaf8_2to1", 1.3), ("nic2", 1.7))])


def frontier_table() -> pd.DataFrame:
    rows = []
    for label, devices, batch, t in (("gpt3+weak", 1024, 128, 1.3), ("gpt3+weak", 4096, 512, 1.4),
                                     ("gpt3+strong", 1024, 384, 3.6), ("gpt3+strong", 4096, 384, 1.2)):
        rows.append({"label": label, "workload": "gpt3_175b", "devices": devices, "batch": batch, "status": "ok",
                     "iteration_time_s": t, "comm_s.tp": 0.6 * t, "comm_s.pp": 0.3 * t, "comm_s.dp": 0.35})
        if devices > 1024:  # counted per class of link: a NIC's busiest link 21 GB at 50 GB/s
            rows[-1].update({"link_classes.device>spine1:nic.max": 21e9, "link_classes.device>spine1:nic.bw_Bps": 50e9,
                             "link_classes.device>spine1:nic.count": devices, "link_classes.device>spine1:nic.mean": 2e10})
    return pd.DataFrame(rows)


def moe_table() -> pd.DataFrame:
    return pd.DataFrame([
        {"label": "mixtral/dgx_h100_4node/e1", "workload": "mixtral_8x7b", "batch": 32, "status": "error",
         "error": "device D0: the model state (weights, gradients, optimizer) and the input batch need 204 GB, over"},
        {"label": "mixtral/dgx_h100_4node/e8", "workload": "mixtral_8x7b", "batch": 32, "status": "ok", "devices": 32,
         "iteration_time_s": 0.8, "busy_s.compute": 0.6, "comm_s.ep": 0.02, "device_mem_peak_bytes": 5e10}])


def headlines_table() -> pd.DataFrame:
    frames = []
    for reading, dc_slow in (("paper", 4.0), ("regather", 3.0)):
        frame = sim_table(designs=[("dc", "bw_aware", dc_slow), ("hc", "bw_aware", 3.0), ("ring", "bw_aware", 1.1)])
        frame["label"] = [f"{reading}/{d}" for d in ("dc", "hc", "ring+bw_aware")] * (len(frame) // 3)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_headlines_compare_each_reading_with_its_own_dc_dla():
    from mcdla.metrics.compare import headline_readings

    rows = {r["reading"]: r for r in headline_readings(headlines_table())}
    assert list(rows) == ["paper", "regather"]
    assert rows["paper"]["fig13.hc.model"] == pytest.approx(4.0 / 3.0)
    assert rows["regather"]["fig13.ring+bw_aware.model"] == pytest.approx(3.0 / 1.1)


def serving_table() -> pd.DataFrame:
    rows = []
    for label, slow in (("DGX H100", 1.0), ("DGX H100, KV in host DRAM", 4.0)):
        for rate in (2, 8, 32):
            rows.append({"label": label, "workload": "llama3_70b", "serving.rate": rate, "status": "ok",
                         "throughput_tokens_s": 100.0 * rate / slow, "tpot_s.p99": 0.01 * slow * rate ** 0.5,
                         "ttft_s.p99": 0.1, "slo.ttft_s": 0.45, "slo.tpot_s": 0.04})
    return pd.DataFrame(rows)


TABLES = {
    "serving_memory": (serving_table, {}),
    "headlines": (headlines_table, {}),
    "cluster_fabric": (fabric_table, {}),
    "frontier_scale": (frontier_table, {}),
    "moe_memory": (moe_table, {}),
    "scale_out": (scale_table, {}),
    "llm_memory": (llm_table, {}),
    "memory_2026": (table_2026, {}),
    "fig09": (fig09_table, {}),
    "fig11": (sim_table, {}),
    "fig12": (sim_table, {}),
    "fig13": (sim_table, {}),
    "dgx2": (lambda: sim_table(designs=[DESIGNS[0], DESIGNS[4]]), {}),
    "cdma": (lambda: sim_table(designs=[DESIGNS[0], DESIGNS[4]]), {}),
    "tpuv2": (lambda: sim_table(designs=[DESIGNS[0], DESIGNS[4]]), {}),
    "fig14": (lambda: sim_table(batches=(64, 256, 1024), designs=[DESIGNS[0], DESIGNS[4]]), {}),
    "pcie4": (pcie_table, {}),
    "scalability": (scalability_table, {}),
    "power": (power_table, {"fig11_13": sim_table()}),
    "link_bytes": (sim_table, {}),
}


def test_the_frontier_figure_draws_each_fabric_tiers_busiest_link_where_counted_per_class():
    from mcdla.plots import figures

    fig = figures.frontier_scale(frontier_table(), {})
    tiers = fig.axes[2]
    # One line per series whose runs were counted per class: the NIC-leaf tier at 4,096 GPUs,
    # 21 GB at 50 GB/s in 1.4 s (weak, 30 %) and in 1.2 s (strong, 35 %).
    assert [line.get_label() for line in tiers.lines] == ["GPT-3 175B, weak, fat tree: device-spine1",
                                                         "GPT-3 175B, strong, fat tree: device-spine1"]
    assert [list(line.get_ydata()) for line in tiers.lines] == [pytest.approx([30.0]), pytest.approx([35.0])]


def test_every_figure_has_a_table_here():
    assert set(TABLES) == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_renders_png_and_svg(tmp_path, name):
    make, deps = TABLES[name]
    paths = render(name, make(), deps, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    for path in paths:
        assert path.is_file() and path.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_power_figure_draws_without_its_dependency(tmp_path):
    paths = render("power", power_table(), {}, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def test_cli_plot_reads_the_sweep_folder(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: hand\nkind: sim\nfigure: [fig13, fig12]\n", encoding="utf-8")
    folder = tmp_path / "sweep"
    folder.mkdir()
    sim_table().to_csv(folder / store.TABLE, index=False)
    out = tmp_path / "figs"
    assert main(["plot", str(exp), "--results", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fig12.png", "fig12.svg", "fig13.png", "fig13.svg"]


def test_cli_plot_without_results_is_an_input_error(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: hand\nkind: sim\nfigure: fig13\n", encoding="utf-8")
    assert main(["plot", str(exp), "--results", str(tmp_path / "none")]) == 2


def test_fig12_legend_lists_only_the_designs_that_use_cpu_memory():
    """The memory-centric designs and the oracle move nothing through CPU memory: their
    bars are zero, so the legend names them as not shown instead of listing colours that
    appear nowhere (issue 22)."""
    from mcdla.plots.figures import _plt, fig12

    table = sim_table()
    host_free = ~table["topology"].isin(["dc", "hc"])
    table.loc[host_free, ["cpu_mem_bw_Bps.avg", "cpu_mem_bw_Bps.peak"]] = 0.0
    fig = fig12(table, {})
    for ax in fig.axes:
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["DC-DLA", "HC-DLA"]
        assert legend.get_title().get_text() == "0 GB/s, not shown: MC-DLA(S), MC-DLA(L), MC-DLA(B), DC-DLA(O)"
    _plt().close(fig)
    fig = fig12(sim_table(), {})  # every design uses some: all six, no title
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == \
        ["DC-DLA", "HC-DLA", "MC-DLA(S)", "MC-DLA(L)", "MC-DLA(B)", "DC-DLA(O)"]
    assert fig.axes[0].get_legend().get_title().get_text() == ""
    _plt().close(fig)


def test_the_validation_figure_says_what_pass_and_miss_mean(monkeypatch, tmp_path):
    """Each row's bar is green (within its tolerance) or red (a miss); the legend says
    so (issue 22)."""
    from matplotlib.colors import to_hex

    import mcdla.plots.validation as validation
    from mcdla.sweep.validate import Outcome

    drawn = []
    monkeypatch.setattr(validation, "save_figure", lambda fig, path, **kw: drawn.append(fig) or tmp_path / "v.png")
    rows = [Outcome("t", "a step", "step_time", 1.0, 1.05, 0.05, 0.1, "pass", "", "", {}),
            Outcome("t", "another step", "step_time", 1.0, 1.5, 0.5, 0.1, "miss", "", "", {})]
    validation.draw_validation(rows, tmp_path / "v.png")
    right, = [axis for axis in drawn[0].axes if axis.get_title() == "steps, memory, overhead"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == \
        ["pass: within its tolerance", "miss: outside it", "tolerance"]
    bars = [to_hex(p.get_facecolor()) for p in right.patches]
    assert bars == [validation.VERDICT_COLORS[True], validation.VERDICT_COLORS[False]]


def test_the_validation_curves_are_named_by_table_design_operation_and_source(monkeypatch, tmp_path):
    """One curve per table and configuration, its sizes in order; a configuration two
    sources measured is told apart by its source's number; other operations and
    overrides named, all-reduce not (the legend beside the curves)."""
    import mcdla.plots.validation as validation
    from mcdla.sweep.validate import Outcome

    drawn = []
    monkeypatch.setattr(validation, "save_figure", lambda fig, path, **kw: drawn.append(fig) or tmp_path / "v.png")

    def row(size, source, **args):
        return Outcome("nccl", f"{size}", "busbw", 100e9, 110e9, 0.1, 0.1, "pass", source, "",
                       {"topology": "dgx_h100", "size": size, **args})

    rows = [row("1 GiB", "A", algorithm="nvls"), row("8 MiB", "A", algorithm="nvls"),
            row("8 MiB", "B", algorithm="nvls"),
            row("8 MiB", "A", op="all_gather", set={"generator.nodes": 2})]
    validation.draw_validation(rows, tmp_path / "v.png")
    fig = drawn[0]
    legends = [axis.get_legend() for axis in fig.axes if axis.get_legend() is not None]
    names = [t.get_text() for t in legends[0].get_texts()]
    assert names == ["nccl dgx_h100 nvls (source 1 of 2)", "nccl dgx_h100 nvls (source 2 of 2)",
                     "nccl dgx_h100 all_gather generator.nodes=2"]
    curves = fig.axes[0].get_lines()
    assert list(curves[0].get_xdata()) == [8 * 2**20, 2**30]  # sorted by size, measured solid
