#!/usr/bin/env python
"""Simulate a week of traffic on every channel, for the operators' report and dashboard.

Usage: scripts/simulate_traffic.py [--out DIR] [--days N] [--per-day N] [--seed S] [--json]

Builds the bundled knowledge base into DIR/index with the configured model (the default
multilingual-e5-small; incremental when DIR is reused), then drives the real Flask app
in-process, request by request, through simulated days (the clock is moved with
time-machine, so every search, feedback, conversation and callback carries its simulated
time). About --per-day visitors a weekday (fewer at the weekend), between 7:00 and 21:00:

- customers on the FAQ page (55 %): search, scan the results (position k examined with
  probability 1 / k), open a relevant one with probability 0.85 (a wrong one 0.10), vote
  "helpful" after the right article (60 %), "not helpful" after a wrong one (50 %), and ask
  for a callback when nothing helped (35 % of those);
- chatbot users (30 %): write their question, say whether the offered article helped,
  rephrase once when it did not, and ask for a human (30 %) when that did not help either;
- agents with assist (15 %): paste the customer's e-mail, open the article that fits, and
  mark the case resolved, or escalated when nothing fits.

Three in four questions are ones the knowledge base answers (the judged queries of
articles/judgments.tsv, written as customers phrase things); one in four are on topics it
has no article for (balcony solar plants, a deceased customer's contract, TV packages,
paper bills, referral bonuses), the content gaps the report should find. One question in
twenty carries an e-mail address, phone number or customer number, which must arrive
redacted. Leaves in DIR the index and, in DIR/data, the feedback and channels databases,
keys and weights (the default layout under KBSEARCH_HOME), and prints a summary; then::

    export KBSEARCH_HOME=DIR KBSEARCH_ARTICLES=$PWD/articles
    kbsearch report --since 2026-11-23 --format html --out report.html
    kbsearch gaps --since 2026-11-23
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import time_machine

from kbsearch.api import create_app
from kbsearch.config import load_settings
from kbsearch.index.builds import build_index
from kbsearch.index.embedding import Embedder
from kbsearch.learning.evaluation import load_judgments
from kbsearch.service import SearchService
from kbsearch.stores.keys import KeyStore

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # a Monday
CLICK_RELEVANT, CLICK_OTHER, HELPFUL_AFTER, NOT_HELPFUL_AFTER = 0.85, 0.10, 0.60, 0.50
CALLBACK_AFTER_FAILURE, HUMAN_REQUEST = 0.35, 0.30
WEEKDAY_FACTOR = (1.15, 1.05, 1.0, 1.0, 0.95, 0.45, 0.3)
RESULT_LINK = re.compile(r'href="/articles/([a-z0-9-]+)\?s=([0-9a-f-]+)&amp;p=(\d+)"')

# Topics the bundled knowledge base has no article for, as customers ask about them.
GAPS: dict[str, tuple[str, ...]] = {
    "balkonkraftwerk": (
        "Balkonkraftwerk anmelden", "wie melde ich mein balkonkraftwerk an",
        "Steckersolargerät anmelden was muss ich tun", "mini solaranlage balkon anmeldung",
        "balcony solar plant registration"),
    "todesfall": (
        "Vertrag von verstorbener Mutter kündigen", "Todesfall Stromvertrag übernehmen",
        "mein vater ist gestorben was passiert mit seinem vertrag",
        "Sterbefall Vertrag kündigen Sterbeurkunde", "contract of a deceased relative"),
    "fernsehen": (
        "Fernsehen über Internet einrichten", "TV Paket buchen",
        "wie bekomme ich fernsehen über euren anschluss", "IPTV Senderliste",
        "TV package with my internet"),
    "papierrechnung": (
        "Papierrechnung abbestellen", "Rechnung nur noch per E-Mail bekommen",
        "keine rechnung mehr per post", "Online-Rechnung statt Papier umstellen"),
    "werbepraemie": (
        "Freunde werben Prämie", "Bonus wenn ich einen Freund werbe",
        "Empfehlungsprämie wann wird sie ausgezahlt", "refer a friend bonus"),
}
PERSONAL = ("meine mail ist {name}@example.de", "ruf mich an unter 0171 {digits}",
            "Kundennummer {digits}", "my email is {name}@example.com")
NAMES = ("anna", "jonas", "mehmet", "lea", "peter", "sofia", "lukas", "marie")


@dataclass(frozen=True)
class Question:
    """A question a visitor brings, with the articles that answer it (none for a gap)."""

    text: str
    relevant: frozenset[str]
    gap: str = ""


def questions(judgments_file: Path) -> tuple[list[Question], list[Question]]:
    """Return the answerable questions (judged) and the gap questions."""
    answerable = [Question(j.query, frozenset(j.relevant)) for j in load_judgments(judgments_file)]
    gaps = [Question(text, frozenset(), topic) for topic, texts in GAPS.items() for text in texts]
    return answerable, gaps


class Week:
    """The simulated visitors of a week, driving one app through its test client."""

    def __init__(self, out: Path, seed: int, embedder: Embedder | None = None) -> None:
        """Build the index under out and open the app over stores in out.

        ``embedder`` replaces the configured model (tests pass a fake one).
        """
        self.rng = random.Random(seed)
        # the default layout under out, so that KBSEARCH_HOME=out finds what the week left
        self.settings = load_settings(
            environ={"KBSEARCH_HOME": str(out)}, articles=ROOT / "articles",
            model=load_settings().model, rate_limit="", rate_limit_keyed="",
            rate_limit_callbacks="", purge_every_hours=0)
        service = SearchService(self.settings, embedder=embedder)
        build_index(self.settings.articles, self.settings.index, service.embedder)
        keys = KeyStore(self.settings.keys_file)
        self.bot_key = keys.create("bot", "simulated chatbot")[1]
        self.agent_key = keys.create("agent", "simulated agent desk")[1]
        self.client = create_app({"TESTING": True}, search_service=service).test_client()
        self.answerable, self.gaps = questions(ROOT / "articles" / "judgments.tsv")
        self.counts: Counter[str] = Counter()
        self.clock: Any = None

    def question(self) -> tuple[Question, str]:
        """Pick a question and the words a visitor types for it (sometimes with personal data)."""
        asked = self.rng.choice(self.gaps if self.rng.random() < 0.25 else self.answerable)
        text = asked.text
        if self.rng.random() < 0.05:
            extra = self.rng.choice(PERSONAL).format(name=self.rng.choice(NAMES),
                                                     digits=self.rng.randrange(10**6, 10**7))
            text = f"{text}, {extra}"
            self.counts["with_personal_data"] += 1
        return asked, text

    def later(self) -> None:
        """Let the visitor take a while (reading, typing) before the next step."""
        if self.clock is not None:
            self.clock.shift(dt.timedelta(seconds=self.rng.uniform(10, 120)))

    def examined(self, position: int) -> bool:
        """Return whether a visitor looks at a result at this 1-based position."""
        return self.rng.random() < 1.0 / position

    def faq_visit(self, address: str) -> None:
        """A customer searches the FAQ page, maybe reads, votes or asks for a callback."""
        env = {"REMOTE_ADDR": address}
        asked, text = self.question()
        page = self.client.get("/", query_string={"q": text}, environ_base=env)
        self.counts["faq_searches"] += 1
        helped = False
        for article_id, search_id, position in RESULT_LINK.findall(page.get_data(as_text=True)):
            if not self.examined(int(position)):
                continue
            right = article_id in asked.relevant
            if self.rng.random() >= (CLICK_RELEVANT if right else CLICK_OTHER):
                continue
            self.later()
            self.client.get(f"/articles/{article_id}", query_string={"s": search_id,
                                                                     "p": position},
                            environ_base=env)
            self.counts["faq_clicks"] += 1
            vote = ("helpful" if right and self.rng.random() < HELPFUL_AFTER else
                    "not_helpful" if not right and self.rng.random() < NOT_HELPFUL_AFTER
                    else None)
            if vote:
                self.later()
                self.client.post(f"/articles/{article_id}/vote", environ_base=env, data={
                    "vote": vote, "s": search_id, "p": position})
                self.counts[f"faq_{vote}"] += 1
            helped = helped or right
            break
        if not helped and self.rng.random() < CALLBACK_AFTER_FAILURE:
            self.later()
            answer = self.client.post("/rueckruf", environ_base=env, data={
                "name": "Kundin " + self.rng.choice(NAMES).title(),
                "phone": f"030 {self.rng.randrange(10**6, 10**7)}",
                "preferred_time": self.rng.choice(("asap", "morning", "afternoon")),
                "description": text, "context": f"search: {text}"})
            self.counts["callbacks" if answer.status_code == 303 else "callbacks_refused"] += 1

    def bot_conversation(self, number: int) -> None:
        """A chatbot user asks, gives feedback, rephrases once or asks for a human."""
        headers = {"Authorization": f"Bearer {self.bot_key}"}
        conversation = f"sim-{number}"
        asked, text = self.question()
        for attempt in range(2):
            turn = self.client.post("/api/v1/bot/turn", headers=headers, json={
                "conversation_id": conversation, "message": text}).get_json()
            self.counts["bot_turns"] += 1
            if turn["handoff"]["recommended"]:
                self.counts["bot_handoffs"] += 1
                return
            offered = (turn.get("article") or {}).get("id")
            if offered is None:
                continue
            event = "helpful" if offered in asked.relevant else "not_helpful"
            self.later()
            answer = self.client.post("/api/v1/bot/turn", headers=headers, json={
                "conversation_id": conversation,
                "feedback": {"event": event, "article_id": offered}}).get_json()
            self.counts[f"bot_{event}"] += 1
            if event == "helpful":
                return
            if answer["handoff"]["recommended"]:
                self.counts["bot_handoffs"] += 1
                return
            pool = [q for q in self.answerable + self.gaps
                    if q.relevant == asked.relevant and q.gap == asked.gap and q.text != asked.text]
            text = self.rng.choice(pool).text if pool and attempt == 0 else text
            self.later()
        if self.rng.random() < HUMAN_REQUEST:
            self.later()
            turn = self.client.post("/api/v1/bot/turn", headers=headers, json={
                "conversation_id": conversation,
                "message": "Ich möchte mit einem Mitarbeiter sprechen"}).get_json()
            self.counts["bot_turns"] += 1
            self.counts["bot_handoffs"] += int(turn["handoff"]["recommended"])

    def assist_case(self) -> None:
        """An agent pastes a customer's e-mail, opens the fitting article, closes the case."""
        headers = {"Authorization": f"Bearer {self.agent_key}"}
        asked, text = self.question()
        mail = f"Guten Tag,\n{text}\nMit freundlichen Grüßen\n{self.rng.choice(NAMES).title()}"
        answer = self.client.post("/api/v1/assist", headers=headers, json={"text": mail})
        body = answer.get_json()
        self.counts["assist_calls"] += 1
        fitting = [r["id"] for r in body.get("results", []) if r["id"] in asked.relevant]
        for article_id, event in ([(fitting[0], "click"), (fitting[0], "resolved")] if fitting
                                  else [(r["id"], "escalated") for r in body["results"][:1]]):
            self.later()
            self.client.post("/api/v1/feedback", headers=headers, json={
                "search_id": body["search_id"], "article_id": article_id, "event": event,
                "channel": "agent"})
            self.counts[f"agent_{event}"] += 1

    def run(self, days: int, per_day: int) -> None:
        """Play the visitors of each day at their times, moving the clock with them."""
        visits: list[tuple[dt.datetime, str]] = []
        for day in range(days):
            date = START + dt.timedelta(days=day)
            for _ in range(round(per_day * WEEKDAY_FACTOR[date.weekday()])):
                seconds = self.rng.uniform(7 * 3600, 21 * 3600)
                kind = self.rng.choices(("faq", "bot", "assist"), (0.55, 0.30, 0.15))[0]
                visits.append((date + dt.timedelta(seconds=seconds), kind))
        visits.sort()
        seen: list[str] = []
        with time_machine.travel(visits[0][0], tick=False) as clock:
            self.clock = clock
            for number, (when, kind) in enumerate(visits):
                clock.move_to(when)
                if kind == "faq":  # one customer in six comes back during the week
                    if not seen or self.rng.random() >= 1 / 6:
                        seen.append(f"10.{number // 250 % 250}.{number % 250}.{len(seen) % 200}")
                        self.faq_visit(seen[-1])
                    else:
                        self.faq_visit(self.rng.choice(seen))
                elif kind == "bot":
                    self.bot_conversation(number)
                else:
                    self.assist_case()
        self.counts["visits"] = len(visits)


def main() -> int:
    """Run the simulated week and print what happened."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "traffic",
                        help="Folder for the index and stores (reused; default build/traffic).")
    parser.add_argument("--days", type=int, default=7, help="Days to simulate (default 7).")
    parser.add_argument("--per-day", type=int, default=120,
                        help="Visitors on a weekday (default 120).")
    parser.add_argument("--seed", type=int, default=7, help="Random seed (default 7).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    if args.days < 1 or args.per_day < 1:
        parser.error("--days and --per-day must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in ("feedback.sqlite3", "channels.sqlite3", "keys.json"):
        for path in (args.out / "data").glob(stale + "*"):
            path.unlink()  # a fresh week each run; the index is kept and updated
    week = Week(args.out, args.seed)
    week.run(args.days, args.per_day)
    summary: dict[str, Any] = {"out": str(args.out), "start": START.date().isoformat(),
                               "days": args.days, **dict(sorted(week.counts.items()))}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, value in summary.items():
            print(f"{name:>20}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
