"""Property-based fuzz of the HTTP API from its own OpenAPI (schemathesis' case strategies,
run with hypothesis): whatever the generated path, query, headers and body of every operation,
valid for the schema or deliberately not, no answer is a 5xx. Bounded per operation so that it fits the quick suite; derandomized so a
failure reproduces. (Driven by hand: schemathesis' pytest plugin does not load on pytest 9.)"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from svc_stack import KEYS

MAX_EXAMPLES = 25


def test_no_answer_is_a_server_error(api_url):
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    headers = {"Authorization": f"Bearer {KEYS['fuzz']}"}
    server_errors: list[str] = []
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        _fuzz(operation, api_url, headers, calls, server_errors)
    print(f"fuzz: {sum(calls.values())} requests over {len(calls)} operation/mode pairs")
    positive = [label for label in calls if label.endswith("(positive)")]
    assert len(operations) >= 10 and len(positive) == len(operations), calls  # every route ran
    assert not server_errors, "\n".join(server_errors)


def _fuzz(operation, api_url: str, headers: dict, calls: dict, server_errors: list) -> None:
    for mode in GenerationMode:
        label = f"{operation.label} ({mode.value})"

        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case) -> None:
            response = case.call(base_url=api_url, headers=headers, timeout=60)
            calls[label] = calls.get(label, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{label}: {case.method} {case.formatted_path} -> "
                                     f"{response.status_code}: {response.text[:200]}")

        try:
            call()
        except Unsatisfiable:  # an operation with nothing to get wrong (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, label
