"""mcdla.units: reading quantities with units, printing them back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcdla import units
from mcdla.units import UnitError


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("25 GB/s", "bandwidth", 25e9),
        ("900GB/s", "bandwidth", 900e9),
        ("1.5 TB/s", "bandwidth", 1.5e12),
        ("16 GiB", "size", 16 * 2**30),
        ("32 KB", "size", 32e3),
        ("4 KiB", "size", 4096),
        ("128 GB", "size", 128e9),
        ("100 ns", "time", 100e-9),
        ("1.5 ms", "time", 1.5e-3),
        ("2 us", "time", 2e-6),
        ("1 GHz", "frequency", 1e9),
        ("1e3", "count", 1000.0),
        (4096, "size", 4096.0),
        (0.5, "time", 0.5),
    ],
)
def test_parse(text, kind, expected):
    assert units.parse(text, kind) == pytest.approx(expected)


def test_cycles_need_a_clock():
    assert units.parse_time("100 cycles", clock_Hz=1e9) == pytest.approx(100e-9)
    with pytest.raises(UnitError, match="cycles.*clock"):
        units.parse_time("100 cycles")


@pytest.mark.parametrize(
    "value, kind, match",
    [
        ("25 GB", "bandwidth", "unknown unit 'GB'"),  # a size where a bandwidth is due
        ("25 Gb/s", "bandwidth", "unknown unit 'Gb/s'"),  # bits are not bytes
        ("16 GiB/s", "size", "unknown unit"),
        ("1 GiHz", "frequency", "unknown unit"),
        ("fast", "bandwidth", "expected a bandwidth"),
        ("", "size", "expected a size"),
        (True, "size", "expected a size"),
        (None, "time", "expected a time"),
        ([1], "size", "expected a size"),
        ("1e999 B", "size", "non-finite"),
        (float("inf"), "time", "non-finite"),
    ],
)
def test_parse_rejects(value, kind, match):
    with pytest.raises(UnitError, match=match):
        units.parse(value, kind)


def test_unknown_kind_is_a_bug_not_input():
    with pytest.raises(ValueError, match="unknown quantity kind 'mass'"):
        units.parse("1 kg", "mass")


def test_sign_is_left_to_callers():
    assert units.parse_size("-4 KB") == -4e3


@pytest.mark.parametrize(
    "value, kind, text",
    [
        (16 * 2**30, "size", "16 GiB"),
        (1.3e12, "size", "1.3 TB"),  # a multiple of 1 KiB, but not a round one
        (80e9, "size", "80 GB"),
        (4096, "size", "4 KiB"),
        (25e9, "bandwidth", "25 GB/s"),
        (100e-9, "time", "100 ns"),
        (1e9, "frequency", "1 GHz"),
        (42, "count", "42"),
    ],
)
def test_format(value, kind, text):
    assert units.format_quantity(value, kind) == text


@given(st.floats(min_value=1.0, max_value=1e17), st.sampled_from(["size", "bandwidth", "frequency"]))
def test_format_then_parse_round_trips(value, kind):
    back = units.parse(units.format_quantity(value, kind, digits=12), kind)
    assert back == pytest.approx(value, rel=1e-9)


@given(st.floats(min_value=1e-12, max_value=1e6))
def test_time_round_trips(value):
    back = units.parse_time(units.format_time(value, digits=12))
    assert back == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("kind, text, value", [
    ("size", "1073741824", 1073741824.0), ("bandwidth", "2.5e10", 2.5e10), ("time", "1e-6", 1e-6),
])
def test_a_bare_number_in_text_is_the_base_unit(kind, text, value):
    # `mcdla collective --size 1073741824` was refused with "unknown unit ''" while the
    # message said a number of bytes was allowed.
    assert units.parse(text, kind) == value


def test_the_cli_takes_a_bare_byte_count(capsys):
    from mcdla.cli.main import main

    assert main(["collective", "--op", "all_reduce", "--size", "1073741824", "--ring", "8",
                 "--format", "json"]) == 0
    assert '"size_bytes": 1073741824.0' in capsys.readouterr().out
