"""schemathesis against the app's own OpenAPI document, on every route, with and without keys.

The app over the fake sample index is served in-process (WSGI) to schemathesis' engine, the
one its command line runs: the examples, coverage and fuzzing phases, with data that fits
the document (positive) and data that breaks it (negative), under a fixed seed so that CI
sends the same cases every run. Every check is on, among them:

    not_a_server_error           no 5xx
    response_schema_conformance  every answer matches its model in the document
    positive_data_acceptance     ST202: nothing the document allows is refused
    negative_data_rejection      ST201: nothing the document forbids is accepted

Without a key every route is tried (the API, the FAQ pages, the dashboard); with a key of
each role (bot, agent, editor) the API's routes, the only ones a key changes, on an app over
its own copy of the sample index (an editor's reindex really runs, into that copy). Two answers
the document cannot foresee are allowed by the settings below, with their reasons.
(``schemathesis.pytest.from_fixture`` is not used: it reads ``Node._nodeid``, which
pytest 9 no longer has.)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from kbsearch.http.context import Components

from .test_admin import REINDEX, finished, make_app

# A fixed seed, no example database and no cache: every run sends the same cases.
# The dashboard's form posts are tried without a login: every one of them, good or bad, is
# answered with the redirect to the login (303) before its fields are read, a refusal.
# Feedback on an article that was not among the search's results, or at another position,
# is 400 invalid_feedback: a rule of the logged search that the document cannot state.
SETTINGS = """
seed = 20251202
continue-on-failure = true

[generation]
mode = "all"
max-examples = {examples}
deterministic = true
database = "none"

[cache]
enabled = false

[phases.stateful]
enabled = false

[[operations]]
include-path-regex = "^/admin/"
include-method = "POST"
checks.negative_data_rejection.expected-statuses = [303, 400, 401, 403, 404, 405, 406, 409,
                                                    413, 415, 422, 429]

[[operations]]
include-path = "/api/v1/feedback"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 429]
"""
API_ONLY = """
[[operations]]
include-path-regex = "^/(?!api/)"
enabled = false
"""
EXAMPLES = 5  # per operation and phase; the coverage phase adds its own boundary cases
DOCUMENT = "/api/v1/openapi.json"  # the one operation schemathesis leaves out: the document


@dataclass(frozen=True)
class FuzzRun:
    """What one run of schemathesis sent, and the checks that failed by operation."""

    cases: int
    operations: int
    failures: dict[str, list[str]]

    def report(self) -> str:
        """Return the failures as text, one block per operation."""
        return "\n".join(f"{label}:\n  " + "\n  ".join(sorted(set(found)))
                         for label, found in sorted(self.failures.items()))


def fuzz(app, headers: dict[str, str], api_only: bool = False,
         examples: int = EXAMPLES) -> FuzzRun:
    """Run schemathesis over the app's document (only the /api routes with ``api_only``)."""
    settings = SETTINGS.format(examples=examples) + (API_ONLY if api_only else "")
    config = schemathesis.Config.from_str(settings)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    schema.config.update(headers=headers)
    cases, labels = 0, set()
    failures: dict[str, list[str]] = defaultdict(list)
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status != Status.SKIP:
            cases += len(event.recorder.interactions)
            labels.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info:
                        failure = check.failure_info.failure
                        failures[event.recorder.label].append(
                            f"{failure.code} {failure.title}: {failure.message}\n"
                            f"    {check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures["schemathesis"].append(repr(event))
    return FuzzRun(cases, len(labels), dict(failures))


def documented(client, api_only: bool = False) -> int:
    """Count the operations of the app's document, but the document's own."""
    paths = client.get(DOCUMENT).get_json()["paths"]
    return sum(len(methods) for path, methods in paths.items()
               if path != DOCUMENT and (path.startswith("/api/") or not api_only))


@pytest.fixture
def own_index_app(tmp_path, sample_index, small_kb, fake_embedder):
    """An app over its own copy of the sample index, reindexing four articles."""
    return make_app(tmp_path, sample_index, small_kb, fake_embedder)


@pytest.mark.slow
def test_every_route_without_a_key_agrees_with_the_document(app, client, capsys):
    run = fuzz(app, {})
    with capsys.disabled():
        print(f"\nfuzz without a key: {run.cases} cases over {run.operations} operations")
    assert run.operations == documented(client) > 20
    assert not run.failures, run.report()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["bot", "agent", "editor"])
def test_the_api_with_a_key_agrees_with_the_document(own_index_app, role, capsys):
    _, key = Components.of(own_index_app).keys.create(role, f"fuzz {role}")
    headers = {"Authorization": f"Bearer {key}"}
    client = own_index_app.test_client()
    run = fuzz(own_index_app, headers, api_only=True)
    if client.get(REINDEX, headers=headers).status_code == 200:
        finished(client, headers)  # no reindex outlives the test
    with capsys.disabled():
        print(f"\nfuzz {role} key: {run.cases} cases over {run.operations} operations")
    assert run.operations == documented(client, api_only=True) > 5
    assert not run.failures, run.report()
