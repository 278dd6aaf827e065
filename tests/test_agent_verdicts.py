"""Agents' verdicts (a result an agent key marked resolved) count as judged queries."""

from __future__ import annotations

from kbsearch.content.visibility import Caller
from kbsearch.learning.calibration import agent_verdicts, calibration_stamp, merge_judgments
from kbsearch.learning.evaluation import Judgment


def test_resolved_by_an_agent_key_is_a_judged_query(sample_service) -> None:
    agent = Caller(role="agent", key_id="k-agent")
    bot = Caller(role="bot", key_id="k-bot")
    svc = sample_service

    def resolve(query: str, caller: Caller | None, event: str = "resolved", pick: int = 0
                ) -> str:
        response = svc.search(query, caller=caller,
                              channel="api" if caller is None else
                              ("agent" if caller.role == "agent" else "bot"))
        article = response.results[pick].article.id
        svc.record_feedback(response.search_id, article, event,
                            channel="api" if caller is None else
                            ("agent" if caller.role == "agent" else "bot"),
                            caller=caller, token=response.feedback_token)
        return article

    first = resolve("Zählerstand melden", agent)
    again = resolve("zählerstand   MELDEN", agent, pick=1)  # the same query, another article
    resolve("Router blinkt rot", agent, event="helpful")  # not a verdict
    resolve("Rechnung zu hoch", bot)  # a bot's resolved: a customer's word, not an agent's
    resolve("Lastschrift ändern", None)
    known = [a.id for a in svc.index().articles]
    verdicts = agent_verdicts(svc.feedback, known)
    assert [(v.query, v.relevant) for v in verdicts] == [
        ("Zählerstand melden", frozenset({first, again}))]
    assert agent_verdicts(svc.feedback, [i for i in known if i != first])[0].relevant == {again}
    # judgments.tsv and verdicts joined: one query, the articles united, the file's wording
    from_file = [Judgment("zählerstand melden", frozenset({"zaehlerstand-melden"}), 4),
                 Judgment("Gasgeruch", frozenset({"stromausfall-gasgeruch"}), 5)]
    merged = merge_judgments(from_file, verdicts)
    assert [(m.query, m.relevant, m.line) for m in merged] == [
        ("zählerstand melden", frozenset({"zaehlerstand-melden", first, again}), 4),
        ("Gasgeruch", frozenset({"stromausfall-gasgeruch"}), 5)]
    manifest = svc.index().manifest
    assert calibration_stamp(merged, manifest) == calibration_stamp(merged[::-1], manifest)
    assert calibration_stamp(merged, manifest) != calibration_stamp(from_file, manifest)
