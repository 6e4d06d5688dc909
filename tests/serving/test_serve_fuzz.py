"""`mlcls serve` fuzzed from its own OpenAPI schema with Schemathesis (property-based, Hypothesis underneath).

A real `mlcls serve` of the tiny run on 127.0.0.1 (a free port), the schema read from its /openapi.json, then
for every operation requests generated from the schema: bodies the schema allows (positive) and bodies it
refuses (negative) for POST /v1/predict, a few for each GET. Every answer must be no 5xx, a status the schema
lists, of the content type and shape it documents, and a 4xx for a body the schema refuses. At least
MIN_REQUESTS requests are sent, with and without the bearer token. Hypothesis runs derandomized (the same
requests on every run) and without its example database. Marked slow: `pytest -m slow` (CI's .ci/run);
about a minute on 2 CPU cores. Nothing leaves the loopback interface.

    pytest -q -m slow tests/serving/test_serve_fuzz.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra (pip install -e '.[dev]')")
pytest.importorskip("fastapi", reason="the serve extra (pip install 'mlcls[serve]')")
import requests  # noqa: E402  (schemathesis's HTTP client)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.test_serve import stderr_lines, wait_for_line  # noqa: E402

MIN_REQUESTS = 500
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
# examples per (operation, generation mode); GETs without parameters have few distinct requests to make
EXAMPLES = {("POST", GenerationMode.POSITIVE): 300, ("POST", GenerationMode.NEGATIVE): 200,
            ("GET", GenerationMode.POSITIVE): 10}
TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """`mlcls serve` of the tiny run with a token, on 127.0.0.1 and a free port; stopped with SIGTERM, after
    which it must exit 0 with no traceback in its log."""
    token = tmp_path_factory.mktemp("fuzz") / "token"
    token.write_text(TOKEN + "\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcls", "serve", str(run_dir), "--host", "127.0.0.1", "--port", "0",
         "--token-file", str(token), "--max-wait-ms", "1", "--max-records", "50", "--max-text-chars", "2000"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    seen: list[str] = []
    try:
        lines = stderr_lines(process)
        port = int(wait_for_line(lines, r"on http://127\.0\.0\.1:(\d+) ", seen).group(1))
        yield f"http://127.0.0.1:{port}"
        process.terminate()
        assert process.wait(timeout=120) == 0, seen
        wait_for_line(lines, r"^stopped: ", seen)
        assert "Traceback" not in "".join(seen), seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def fuzz(operation, session: requests.Session, mode: GenerationMode, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def one_request(case) -> None:
        case.call_and_validate(session=session, checks=CHECKS)

    one_request()


def test_the_api_answers_as_its_schema_says(server):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    sent: Counter = Counter()  # (method, path, status) -> requests
    for authorised in (True, False):
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: loopback only
        if authorised:
            session.headers["Authorization"] = f"Bearer {TOKEN}"

        def count(response, *args, **kwargs):
            request = response.request
            sent[(request.method, request.path_url.split("?")[0], response.status_code)] += 1

        session.hooks["response"].append(count)
        for result in schema.get_all_operations():
            operation = result.ok()
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.method.upper() == "POST"
                                                 else [])
            for mode in modes:
                examples = EXAMPLES[(operation.method.upper(), mode)] // (1 if authorised else 5)
                fuzz(operation, session, mode, examples)
    assert not [key for key in sent if key[2] >= 500], sent  # (call_and_validate checks each answer as well)
    assert sum(sent.values()) >= MIN_REQUESTS, sent
    predict = Counter({status: n for (_, path, status), n in sent.items() if path == "/v1/predict"})
    assert predict[200] >= 20 and predict[401] >= 20 and predict[422] >= 20 and predict[400] >= 1, predict
    assert {path for _, path, _ in sent} >= {"/v1/predict", "/v1/labels", "/v1/model", "/ready", "/health"}, sent
