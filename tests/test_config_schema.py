"""mcdla.config.schema and loader: typed dataclasses from YAML, every mistake named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from mcdla.config.hardware import DeviceSpec, LinkSpec, MemoryNodeSpec
from mcdla.config.loader import (
    DATA_ROOT,
    apply_overrides,
    find_input,
    parse_set,
    read_yaml,
    shipped,
)
from mcdla.config.schema import Fraction, PositiveInt, Size, Where, build
from mcdla.errors import InputError

DEVICE = {
    "pes": 1024,
    "macs_per_pe": 125,
    "clock": "1 GHz",
    "sram_per_pe": "32 KB",
    "hbm_bw": "900 GB/s",
    "hbm_latency": "100 cycles",
    "hbm_capacity": "16 GiB",
    "links": 6,
}


def device(**changes):
    data = {**DEVICE, **changes}
    return build(DeviceSpec, {k: v for k, v in data.items() if v is not None}, Where("dev.yaml", "device"))


@dataclass(frozen=True)
class Inner:
    size: Size
    share: Fraction = 0.5


@dataclass(frozen=True)
class Outer:
    mode: Literal["local", "bw_aware"]
    parts: tuple[Inner, ...]
    count: PositiveInt = 1
    named: dict[str, Inner] = field(default_factory=dict)


# --- building -----------------------------------------------------------------------


def test_device_converts_units_once():
    spec = device()
    assert spec.clock == 1e9
    assert spec.sram_per_pe == 32e3
    assert spec.hbm_bw == 900e9
    assert spec.hbm_latency == pytest.approx(100e-9)  # cycles through the sibling clock
    assert spec.hbm_capacity == 16 * 2**30
    assert spec.dma_engines == 2  # a default
    assert spec.peak_macs_per_s == pytest.approx(128e12)


def test_shipped_presets_build():
    presets = read_yaml(DATA_ROOT / "topologies" / "presets" / "hardware.yaml")
    where = Where("hardware.yaml")
    assert build(DeviceSpec, presets["devices"]["table2"], where).pes == 1024
    node = build(MemoryNodeSpec, presets["memory_nodes"]["table2"], where)
    assert node.capacity_bytes == pytest.approx(1.28e12)
    assert build(LinkSpec, presets["links"]["pcie3_x16"], where).effective_bw_Bps == pytest.approx(12e9)


def test_plain_numbers_are_base_units():
    assert device(hbm_bw=900e9, hbm_latency=1e-7).hbm_latency == pytest.approx(1e-7)


def test_nested_values_round_trip():
    data = {"mode": "local", "parts": [{"size": "4 KiB"}, {"size": 10, "share": 1}],
            "named": {"a": {"size": "1 MB"}}}
    built = build(Outer, data, Where("x.yaml"))
    assert built == Outer("local", (Inner(4096.0), Inner(10.0, 1.0)), 1, {"a": Inner(1e6)})


# --- rejections, each naming file and key -------------------------------------------


@pytest.mark.parametrize(
    "changes, key, message",
    [
        ({"hbm_bw": "900 GB"}, "hbm_bw", "unknown unit 'GB'"),
        ({"hbm_bw": "fast"}, "hbm_bw", "expected a bandwidth"),
        ({"sram_per_pe": "-32 KB"}, "sram_per_pe", "must be positive"),
        ({"sram_per_pe": 0}, "sram_per_pe", "must be positive"),
        ({"hbm_capacity": "2 EB"}, "hbm_capacity", "beyond any physical system"),
        ({"pes": 0}, "pes", "must be >= 1"),
        ({"pes": -4}, "pes", "must be >= 1"),
        ({"pes": "many"}, "pes", "expected an integer"),
        ({"pes": 2.5}, "pes", "expected an integer"),
        ({"pes": True}, "pes", "expected an integer"),
        ({"pes": None}, "pes", "missing"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"dma_engines": 0}, "dma_engines", "must be >= 1"),
        ({"hbm_latency": "-1 ns"}, "hbm_latency", "must be non-negative"),
    ],
)
def test_device_rejections(changes, key, message):
    with pytest.raises(InputError, match=rf"^dev\.yaml: device\.{key}: .*{message}"):
        device(**changes)


def test_fraction_range():
    with pytest.raises(InputError, match=r"x\.yaml: efficiency: must be <= 1"):
        build(LinkSpec, {"bw": "1 GB/s", "latency": 0, "efficiency": 1.5}, Where("x.yaml"))
    with pytest.raises(InputError, match=r"x\.yaml: efficiency: must be > 0"):
        build(LinkSpec, {"bw": "1 GB/s", "latency": 0, "efficiency": 0}, Where("x.yaml"))


@pytest.mark.parametrize(
    "data, key, message",
    [
        ({"mode": "global", "parts": []}, "mode", "one of 'local', 'bw_aware'"),
        ({"mode": "local", "parts": {"size": 1}}, "parts", "expected a list"),
        ({"mode": "local", "parts": [{"size": 1}, {"size": "1 XB"}]}, r"parts\[1\]\.size", "unknown unit"),
        ({"mode": "local", "parts": [{"size": 1, "extra": 2}]}, r"parts\[0\]\.extra", "unknown key"),
        ({"mode": "local", "parts": [{}]}, r"parts\[0\]\.size", "missing"),
        ({"mode": "local", "parts": [], "named": {"a": {"size": -1}}}, r"named\.a\.size", "positive"),
        ({"mode": "local", "parts": [], "named": []}, "named", "expected a mapping"),
        ({"parts": []}, "mode", "missing"),
    ],
)
def test_nested_rejections_name_the_dotted_key(data, key, message):
    with pytest.raises(InputError, match=rf"^x\.yaml: {key}: .*{message}"):
        build(Outer, data, Where("x.yaml"))


def test_a_non_mapping_is_refused():
    with pytest.raises(InputError, match=r"x\.yaml: dev: expected a mapping"):
        build(DeviceSpec, [1, 2], Where("x.yaml", "dev"))


def test_input_error_keeps_its_parts():
    error = InputError("bad", file="f.yaml", key="a.b")
    assert (str(error), error.file, error.key, error.detail) == ("f.yaml: a.b: bad", "f.yaml", "a.b", "bad")


# --- loader -------------------------------------------------------------------------


def test_read_yaml_reads_a_mapping(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: {b: 1}\n")
    assert read_yaml(path) == {"a": {"b": 1}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: [1, 2\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),  # safe_load only
    ],
)
def test_read_yaml_rejections_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"bad\.yaml: .*{message}"):
        read_yaml(path)


def test_read_yaml_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.yaml: cannot read"):
        read_yaml(tmp_path / "nope.yaml")


def test_find_input_by_name_and_by_path(tmp_path):
    assert find_input("alexnet", "workloads", "workload") == DATA_ROOT / "workloads" / "alexnet.yaml"
    path = tmp_path / "mine.yaml"
    path.write_text("a: 1\n")
    assert find_input(str(path), "workloads", "workload") == path
    assert "resnet34" in shipped("workloads")


def test_find_input_unknown_name_lists_what_ships():
    with pytest.raises(InputError, match=r"workload: unknown workload 'lenet'; shipped: alexnet"):
        find_input("lenet", "workloads", "workload")
    with pytest.raises(InputError, match="no such workload file"):
        find_input("missing/file.yaml", "workloads", "workload")


def test_apply_overrides_sets_dotted_keys_on_a_copy():
    doc = {"device": {"hbm_bw": "900 GB/s"}, "n": 1}
    result = apply_overrides(doc, [("device.hbm_bw", "1.2 TB/s"), ("extra.deep.key", 3)])
    assert result == {"device": {"hbm_bw": "1.2 TB/s"}, "n": 1, "extra": {"deep": {"key": 3}}}
    assert doc == {"device": {"hbm_bw": "900 GB/s"}, "n": 1}


def test_apply_overrides_refuses_to_descend_into_a_value():
    with pytest.raises(InputError, match=r"--set: 'n' is a value"):
        apply_overrides({"n": 1}, [("n.m", 2)])


def test_overridden_unknown_key_is_caught_by_the_schema():
    data = apply_overrides(DEVICE, [("hbm_bandwidth", "1 TB/s")])
    with pytest.raises(InputError, match=r"device\.hbm_bandwidth: unknown key"):
        build(DeviceSpec, data, Where("dev.yaml", "device"))


@pytest.mark.parametrize(
    "item, expected",
    [("a.b=3", ("a.b", 3)), ("bw=25 GB/s", ("bw", "25 GB/s")), ("x=", ("x", "")), ("f=true", ("f", True))],
)
def test_parse_set(item, expected):
    assert parse_set(item) == expected


@pytest.mark.parametrize("item", ["novalue", "=3", "a..b=1", ".a=1"])
def test_parse_set_rejections(item):
    with pytest.raises(InputError, match="--set: expected KEY=VALUE"):
        parse_set(item)


def test_a_boolean_is_not_a_number_of_a_literal(capsys):
    from mcdla.cli.main import main

    assert main(["sim", "--set", "execution.zero=yes"]) == 2  # True == 1 must not pass as stage 1
    assert "execution.zero: expected one of 0, 1, 2, 3, got True" in capsys.readouterr().err


def test_rows_of_anything_are_taken_as_they_are_and_a_bad_row_is_named():
    """A ``tuple[tuple[Any, ...], ...]`` field (a topology's connections) takes lists of
    lists as tuples in one pass; a row that is no list is still refused at its index."""

    @dataclass(frozen=True)
    class Rows:
        rows: tuple[tuple[Any, ...], ...] = ()

    built = build(Rows, {"rows": [["D0", "M0", "nvlink", 3], ["M0", "D1", "nvlink"]]}, Where("x.yaml"))
    assert built.rows == (("D0", "M0", "nvlink", 3), ("M0", "D1", "nvlink"))
    assert all(type(row) is tuple for row in built.rows)
    with pytest.raises(InputError, match=r"x\.yaml: rows\[1\]: expected a list"):
        build(Rows, {"rows": [["D0", "M0", "nvlink"], "M0 D1"]}, Where("x.yaml"))


@pytest.mark.parametrize("key, value, named", [
    ("training.precision", "bad", "training.precision"),
    ("training.micro_batches", "0", "training.micro_batches"),
    ("execution.zero", "7", "execution.zero"),
])
def test_a_bad_set_key_is_named_as_the_user_wrote_it(key, value, named):
    """--set training.KEY is refused under that name, not execution.training.KEY (the
    training keys live inside the execution spec)."""
    from mcdla.run import load_inputs

    with pytest.raises(InputError) as caught:
        load_inputs(topology="ring", workload="vgg_e", sets=[(key, value)])
    assert caught.value.key == named
