"""A model family: one workload file and the per-size overrides of its parameters
(``mcdla plan --largest``).

    name: gpt3
    workload: gpt3_175b          # a template workload: the shared parameters
    members:                     # smallest first; each overrides the template's keys
      - {name: gpt3_125m, layers: 12, hidden: 768, heads: 12, ffn: 3072}

A member is the workload with its keys set as ``--set workload.KEY`` would set them,
so every key is checked by the workload's own schema when the member is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcdla.config import loader
from mcdla.config.schema import Label, Where, build, check_text
from mcdla.errors import InputError

__all__ = ["Family", "read_family"]


@dataclass(frozen=True)
class Family:
    name: Label
    workload: str
    members: tuple[dict[str, Any], ...]
    description: str = ""

    def member_sets(self, member: dict[str, Any]) -> list[tuple[str, Any]]:
        """The ``--set`` pairs that make the workload this member."""
        return [(f"workload.{k}", v) for k, v in member.items()]


def read_family(name_or_path: str) -> Family:
    """A family by shipped name or path, checked (every member names itself)."""
    path = loader.find_input(name_or_path, "families", "family")
    where = Where(loader.display_path(path))
    family = build(Family, loader.read_yaml(path), where)
    if not family.members:
        raise where.child("members").error("expected at least one member")
    names = set()
    for i, member in enumerate(family.members):
        name = member.get("name")
        if not isinstance(name, str) or not name:
            raise where.child("members").child(i).child("name").error("expected the member's name")
        check_text(name, Label.__metadata__[0], where.child("members").child(i).child("name"))
        if name in names:
            raise where.child("members").child(i).child("name").error(f"repeats {name!r}")
        names.add(name)
    if not isinstance(family.workload, str):
        raise InputError("expected a workload name or file", file=str(path), key="workload")
    return family
