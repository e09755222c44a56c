"""The runtime gap table `inspect` applies agrees with the measured gaps: for every rule case of
`test_rules.py`, the runtimes `inspect` says lack an op are exactly the case's strict xfails."""

from __future__ import annotations

import pytest

from jaxport.inspection import inspect_program
from tests.lowering.harness import program
from tests.lowering.test_rules import CASES, _out


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_inspect_names_exactly_the_measured_gaps(c) -> None:
    prog = program(lambda p, *xs: _out(c.op(*xs)), c.inputs)
    (function,) = inspect_program(prog)["functions"].values()
    found = {target for entry in function["primitives"].values() for target in entry["gaps"]}
    assert found == set(c.gaps), function["primitives"]
    for target in ("tflite", "tfjs"):
        lowered = target not in c.gaps
        assert (function["verdict"][target]["path"] == "lowered") is lowered
