"""Under load, probes stay green: vLLM's `bench serve` at concurrency 32 against the shared
server while `healthcheck ready` and `live` run every second (a short preset here; the
full one is `make bench-reliability`)."""

from __future__ import annotations

import pytest

from testbed.servers import child_env
from verification.load import LoadPlan, run_load_with_probes

pytestmark = pytest.mark.integration


def test_probes_stay_green_while_32_requests_run_at_once(shared_server, fixture_model):
    plan = LoadPlan(concurrency=32, num_prompts=64, input_len=64, output_len=32)
    outcome = run_load_with_probes(shared_server.url, "gemma-3-270m-it", str(fixture_model),
                                   shared_server.state_dir, plan, env=child_env())
    assert outcome["requests"]["completed"] == plan.num_prompts and outcome["requests"]["failed"] == 0
    for name, probe in outcome["probes"].items():
        assert probe["calls"] >= 1, name
        assert probe["failures"] == 0, (name, probe["failure_details"])
