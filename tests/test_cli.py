import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from kbsearch.cli import main

from .conftest import MODEL, ROOT
from .servers import free_port
from .test_evaluation import write_beir


@pytest.fixture
def env(tmp_path, sample_index, fake_model):
    return {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index)}


MINI_DOCS = [
    ("Zählerstand melden", "Melden Sie den Stand online im Kundenportal."),
    ("Router blinkt rot", "Starten Sie den Router neu und prüfen Sie die Kabel."),
    ("Pay by transfer", "You can pay your bill by bank transfer."),
    ("Umzug melden", "Teilen Sie uns Ihre neue Adresse vier Wochen vorher mit."),
    ("Abschlag ändern", "Den monatlichen Abschlag passen Sie im Portal an."),
    ("Roaming im Ausland", "In der EU telefonieren Sie zum Inlandspreis."),
]


def mini_docs(n: int) -> list[dict[str, str]]:
    """The first n of a few short BEIR documents (ids d0, d1, ...)."""
    return [{"_id": f"d{i}", "title": t, "text": b} for i, (t, b) in enumerate(MINI_DOCS[:n])]


def run(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_help_lists_every_command():
    result = run(["--help"], {})
    for command in ("index", "search", "serve", "eval", "model", "settings"):
        assert command in result.output


def test_help_does_not_import_torch():
    code = "import sys; from kbsearch.cli import main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_index_command_builds_and_reports(small_kb, tmp_path, fake_model):
    env = {"KBSEARCH_MODEL": str(MODEL)}
    index_dir = tmp_path / "idx"
    result = run(["index", "--articles", str(small_kb), "--index", str(index_dir), "-q"], env)
    assert result.exit_code == 0, result.output
    assert "4 articles" in result.output and "0 skipped" in result.output
    (small_kb / "bad.md").write_text("---\nid: Bad Id\n---\ntext\n", "utf-8")
    result = run(["index", "--articles", str(small_kb), "--index", str(index_dir), "-q"], env)
    assert result.exit_code == 2
    assert "bad.md" in result.output and "reused" in result.output
    result = run(["index", "--strict", "--articles", str(small_kb), "--index", str(index_dir)],
                 env)
    assert result.exit_code == 1 and "--strict" in result.output


@pytest.mark.model
def test_index_works_from_any_directory_with_the_default_model(small_kb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an editor's articles repository, say
    monkeypatch.delenv("KBSEARCH_MODEL", raising=False)
    monkeypatch.delenv("KBSEARCH_HOME", raising=False)
    result = run(["index", "--articles", str(small_kb), "--index", "idx", "-q"], {})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "idx" / "CURRENT").is_file()


@pytest.mark.model  # goes through the real model loader, which names the folder
def test_a_missing_model_folder_is_named_with_the_command_that_builds_it(
    small_kb, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KBSEARCH_MODEL", raising=False)
    result = run(["index", "--articles", str(small_kb), "-q"], {"KBSEARCH_HOME": str(tmp_path)})
    folder = tmp_path / "models" / "multilingual-e5-small"
    assert result.exit_code == 1
    assert f"embedding model folder {folder} is missing" in result.output
    assert f"kbsearch model build --out {folder}" in result.output


def test_index_command_missing_folder(tmp_path, fake_model):
    result = run(["index", "--articles", str(tmp_path / "nope"), "--index", str(tmp_path / "i")],
                 {"KBSEARCH_MODEL": str(MODEL)})
    assert result.exit_code == 1 and "does not exist" in result.output


def test_search_command_json_and_table(env):
    result = run(["search", "Zählerstand melden", "-k", "2", "--json"], env)
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body["results"][0]["id"] == "zaehlerstand-melden" and len(body["results"]) == 2
    table = run(["search", "Router blinkt", "-k", "3"], env)
    assert table.exit_code == 0 and "router-stoerung" in table.output


def test_search_command_errors(env, tmp_path):
    assert "k: must be between" in run(["search", "x", "-k", "0"], env).output
    missing = run(["search", "x"], {**env, "KBSEARCH_INDEX": str(tmp_path / "none")})
    assert missing.exit_code == 1 and "kbsearch index" in missing.output
    bad = run(["search", "x"], {**env, "KBSEARCH_MAX_K": "-1"})
    assert bad.exit_code == 1 and "KBSEARCH_MAX_K" in bad.output


def test_eval_command_json(tmp_path, fake_model):
    write_beir(
        tmp_path / "mini",
        [{"_id": "d1", "title": "Zählerstand melden", "text": "Melden Sie den Stand online."},
         {"_id": "d2", "title": "Router blinkt rot", "text": "Starten Sie den Router neu."},
         {"_id": "d3", "title": "Pay by transfer", "text": "You can pay by bank transfer."}],
        [{"_id": "q1", "text": "Wie gebe ich meinen Zählerstand durch?"},
         {"_id": "q2", "text": "Internet kaputt, Lampe am Router rot"},
         {"_id": "q3", "text": "bank transfer payment"}],
        "q1\td1\t1\nq2\td2\t1\nq3\td3\t1\n",
    )
    result = run(["eval", str(tmp_path / "mini"), "--mode", "all", "--json"],
                 {"KBSEARCH_MODEL": str(MODEL)})
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["dataset"] == "mini" and body["queries"] == 3
    assert set(body["modes"]) == {"hybrid", "keyword", "dense"}
    for figures in body["modes"].values():
        assert set(figures) == {"ndcg@10", "mrr@10", "recall@10", "recall@100", "top1", "ece"}
    assert body["modes"]["hybrid"]["top1"] == 1.0
    bad = run(["eval", str(tmp_path / "nope")], {"KBSEARCH_MODEL": str(MODEL)})
    assert bad.exit_code == 1 and "does not exist" in bad.output


@pytest.mark.slow  # draws the reliability diagram with matplotlib
def test_eval_command_cross_fits_calibration_and_plots(tmp_path, fake_model):
    docs = mini_docs(6)
    queries = ["Wie gebe ich meinen Zählerstand durch?", "Internet kaputt, Lampe am Router rot",
               "bank transfer payment", "Ich ziehe um, was muss ich tun?",
               "Abschlag zu hoch", "Telefonieren in Spanien"]
    write_beir(tmp_path / "six", docs,
               [{"_id": f"q{i}", "text": q} for i, q in enumerate(queries)],
               "".join(f"q{i}\td{i}\t1\n" for i in range(6)))
    env = {"KBSEARCH_MODEL": str(MODEL)}
    plot = tmp_path / "plots" / "reliability.png"
    result = run(["eval", str(tmp_path / "six"), "--mode", "hybrid", "--calibrate", "2",
                  "--plot", str(plot), "--json"], env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["calibration"] == "2-fold cross-fitted on this set"
    assert set(body["modes"]) == {"hybrid"}
    assert 0.0 <= body["modes"]["hybrid"]["ece"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = run(["eval", str(tmp_path / "six"), "--calibrate", "1"], env)
    assert one.exit_code == 2 and "at least 2 folds" in one.output
    bad_plot = run(["eval", str(tmp_path / "six"), "--plot", str(tmp_path / "x.svg")], env)
    assert bad_plot.exit_code == 2 and "must end in .png" in bad_plot.output


def test_settings_command_lists_variables():
    result = run(["settings"], {})
    assert "KBSEARCH_MODEL" in result.output and "KBSEARCH_INDEX" in result.output


def test_serve_runs_a_real_gunicorn_server(model_index, tmp_path):
    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(model_index),
           # stores under tmp_path, not the default data/ of the checkout it runs in
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "weights"),
           "KBSEARCH_KEYS_FILE": str(tmp_path / "keys.json"),
           "KBSEARCH_CHANNELS_DB": str(tmp_path / "channels.sqlite3")}
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    kbsearch = shutil.which("kbsearch", path=os.path.dirname(sys.executable)) or "kbsearch"
    process = subprocess.Popen(
        [kbsearch, "serve", "--port", str(port)],
        env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    health = json.load(r)
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        assert health["status"] == "ok"
        url = f"http://127.0.0.1:{port}/api/v1/search?q=Router+blinkt&k=1"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert json.load(r)["results"][0]["id"] == "router-stoerung"
        logged, until = "", time.monotonic() + 10  # the access line follows the answer
        while "/api/v1/search" not in logged and time.monotonic() < until:
            time.sleep(0.2)
            logged = (tmp_path / "serve.log").read_text()
        assert "GET /api/v1/search HTTP/1.1\" 200" in logged  # the access log names the path
        assert "blinkt" not in logged  # and never the words searched for
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.mark.slow  # 40 searches with feedback, a training and a judged comparison
def test_train_then_list_show_promote_and_rollback_weights(tmp_path, sample_index,
                                                            fake_model):
    from kbsearch.api import create_app
    from kbsearch.service import SearchService

    from .conftest import ARTICLES, make_settings

    settings = make_settings(tmp_path, index=sample_index)
    service = SearchService(settings, embedder=fake_model)
    client = create_app({"TESTING": True}, search_service=service).test_client()
    queries = ["Zählerstand melden", "Router blinkt rot", "Abschlag ändern", "Umzug melden",
               "Passwort vergessen", "Roaming im Ausland", "SEPA Lastschrift", "WLAN langsam"]
    for n in range(40):
        body = client.get("/api/v1/search", query_string={"q": queries[n % 8], "k": 5},
                          environ_base={"REMOTE_ADDR": f"10.0.0.{n}"}).get_json()
        best = body["results"][0]["id"]
        for event in ("click", "helpful"):
            assert client.post("/api/v1/feedback", json={
                "search_id": body["search_id"], "feedback_token": body["feedback_token"],
                "article_id": best, "event": event},
                environ_base={"REMOTE_ADDR": f"10.0.0.{n}"}).status_code == 201
    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index),
           "KBSEARCH_FEEDBACK_DB": str(settings.feedback_db),
           "KBSEARCH_WEIGHTS_DIR": str(settings.weights_dir),
           "KBSEARCH_JUDGMENTS": str(ARTICLES / "judgments.tsv")}
    result = run(["train", "--json"], env)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["parent"] == "default"
    # 8 queries asked 5 times each: the two asked first most recently are held out whole
    report = outcome["report"]
    assert report["train_searches"] == 30 and report["held_out_searches"] == 10
    assert set(outcome["report"]["judged_ndcg@10"]) == {"current", "new"}
    judged = [line for line in (ARTICLES / "judgments.tsv").read_text("utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    assert outcome["report"]["calibration_judged_queries"] == len(judged)
    assert outcome["report"]["learned_questions"] >= 8
    version = outcome["version"]

    listed = json.loads(run(["weights", "list", "--json"], env).stdout)
    assert [v["version"] for v in listed] == ["default", version]
    shown = json.loads(run(["weights", "show", version], env).stdout)
    assert shown["version"] == version and "hybrid" in shown["model"]["modes"]

    assert run(["weights", "promote", version], env).exit_code == 0
    assert service.ranker(refresh=True).version == version
    # the learned questions now bring their articles up for these queries
    hit = service.search("Zählerstand melden", log=False, k=1).results[0].hit
    assert hit.scores["question_sim"] > 0
    assert run(["weights", "rollback"], env).exit_code == 0
    assert service.ranker(refresh=True).version == "default"
    nothing = run(["weights", "rollback"], env)
    assert nothing.exit_code == 1 and "nothing to roll back" in nothing.output
    missing = run(["weights", "show", "nope"], env)
    assert missing.exit_code == 1 and "no weights version 'nope'" in missing.output


def test_train_without_enough_feedback_says_so(tmp_path, sample_index, fake_model):
    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index),
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "w")}
    result = run(["train", "--no-judgments"], env)
    assert result.exit_code == 1 and "training needs at least 20" in result.output


SIM_QUERIES = ["Zählerstand durchgeben", "Router Lampe rot", "pay by bank transfer",
               "ich ziehe um", "Abschlag senken", "Zählerstand online", "Internet kaputt",
               "Überweisung statt Karte", "neue Adresse", "monatliche Zahlung ändern"]


def write_sim_set(folder):
    write_beir(folder, mini_docs(5),
               [{"_id": f"q{i}", "text": q} for i, q in enumerate(SIM_QUERIES)],
               "".join(f"q{i}\td{i % 5}\t1\n" for i in range(10)))


def script(name, *args, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        capture_output=True, text=True, env={**os.environ, "KBSEARCH_MODEL": str(MODEL)},
        timeout=timeout,
    )


@pytest.mark.model  # the script loads the real model
def test_fit_weights_out_writes_loadable_weights_and_leaves_the_shipped_ones(tmp_path):
    from kbsearch.ranking.scoring import load_ranking_model

    write_sim_set(tmp_path / "sim")
    shipped = (ROOT / "kbsearch" / "weights" / "default.json").read_bytes()
    out = script("fit_weights.py", tmp_path / "sim", "--folds", "2", "--json",
                 "--out", tmp_path / "w.json", "--cache", tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["sim"]
    assert report["queries"] == 10 and set(report["modes"]) == {"hybrid", "keyword", "dense"}
    model = load_ranking_model(tmp_path / "w.json")
    assert "sim (10 queries)" in model.description
    assert set(model.modes) == {"hybrid", "keyword", "dense"}
    assert (ROOT / "kbsearch" / "weights" / "default.json").read_bytes() == shipped


@pytest.mark.model  # the script loads the real model
def test_simulate_feedback_script_prints_its_rounds_as_json(tmp_path):
    write_sim_set(tmp_path / "sim")
    out = script("simulate_feedback.py", tmp_path / "sim", "--sessions", "60", "--rounds", "2",
                 "--seed", "3", "--json", "--cache", tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    rounds = body["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["sessions"] for r in rounds] == [0, 30, 60]
    for row in rounds:
        assert {"round", "sessions", "ndcg@10", "mrr@10", "ece"} <= set(row)
        assert 0.0 <= row["ndcg@10"] <= 1.0 and 0.0 <= row["ece"] <= 1.0
    assert rounds[2]["events"] > rounds[1]["events"] > 0
    assert body["held_out_queries"] == 2
    # every round split the same way: queries whose article has learned questions, the rest
    split = {(r["learned"]["queries"], r["rest"]["queries"]) for r in rounds}
    assert len(split) == 1 and sum(split.pop()) == 2
    for row in rounds:
        groups = [row["learned"], row["rest"]]
        together = sum(g["queries"] * g["mrr@10"] for g in groups) / 2
        assert together == pytest.approx(row["mrr@10"], abs=1e-3)


@pytest.mark.model  # the script loads the real model
def test_simulate_feedback_can_start_from_other_weights(tmp_path):
    write_sim_set(tmp_path / "sim")
    start = json.loads((ROOT / "kbsearch" / "weights" / "default.json").read_text("utf-8"))
    start["description"] = "dense only"
    hybrid = start["modes"]["hybrid"]["score"]
    hybrid["coefficients"] = {f: (30.0 if f == "dense" else 0.0) for f in hybrid["coefficients"]}
    (tmp_path / "start.json").write_text(json.dumps(start), "utf-8")
    out = script("simulate_feedback.py", tmp_path / "sim", "--sessions", "80", "--rounds", "1",
                 "--seed", "3", "--json", "--cache", tmp_path / "cache",
                 "--start-weights", tmp_path / "start.json", "--keep", tmp_path / "kept")
    assert out.returncode == 0, out.stderr
    history = (tmp_path / "kept" / "weights" / "HISTORY").read_text("utf-8").split()
    first = json.loads((tmp_path / "kept" / "weights" / f"{history[0]}.json").read_text("utf-8"))
    assert first["reason"].startswith("starting weights")
    assert first["model"]["modes"]["hybrid"]["score"]["coefficients"]["bm25"] == 0.0
    assert first["model"]["description"] == "dense only"
    trained = json.loads((tmp_path / "kept" / "weights" / f"{history[1]}.json").read_text("utf-8"))
    assert trained["parent"] == history[0]

    missing = script("simulate_feedback.py", tmp_path / "sim",
                     "--start-weights", tmp_path / "nope.json")
    assert missing.returncode == 2 and "nope.json: no such file" in missing.stderr


def test_calibrate_on_the_judged_queries_of_the_knowledge_base(tmp_path, sample_index,
                                                               fake_model):
    from .conftest import ARTICLES

    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index),
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "w"),
           "KBSEARCH_JUDGMENTS": str(ARTICLES / "judgments.tsv")}
    result = run(["calibrate", "--json"], env)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["report"]["judged_queries"] == 62
    ece = outcome["report"]["ece_cross_fitted"]
    assert outcome["promoted"] == (ece["new"] <= ece["current"])
    listed = json.loads(run(["weights", "list", "--json"], env).stdout)
    assert listed[-1]["version"] == outcome["version"]
    missing = run(["calibrate"], {**env, "KBSEARCH_JUDGMENTS": str(tmp_path / "none.tsv")})
    assert missing.exit_code == 1 and "no judged queries" in missing.output
    bad = tmp_path / "bad.tsv"
    bad.write_text("wie melde ich den zählerstand\tgibt-es-nicht\n", "utf-8")
    unknown = run(["calibrate"], {**env, "KBSEARCH_JUDGMENTS": str(bad)})
    assert unknown.exit_code == 1 and "bad.tsv:1" in unknown.output


def test_keys_create_list_and_revoke(tmp_path):
    from kbsearch.stores.keys import KeyStore

    env = {"KBSEARCH_KEYS_FILE": str(tmp_path / "keys.json")}
    created = run(["keys", "create", "--role", "agent", "--name", "Team Nord"], env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("kbs_") and "shown only now" in created.stderr
    assert KeyStore(tmp_path / "keys.json").authenticate(key).role == "agent"
    listed = json.loads(run(["keys", "list", "--json"], env).stdout)
    assert [(k["role"], k["name"], k["revoked"]) for k in listed] == [
        ("agent", "Team Nord", False)]
    assert key not in run(["keys", "list"], env).output
    assert run(["keys", "revoke", listed[0]["id"]], env).exit_code == 0
    assert json.loads(run(["keys", "list", "--json"], env).stdout)[0]["revoked"] is True
    bad_role = run(["keys", "create", "--role", "admin", "--name", "x"], env)
    assert bad_role.exit_code == 2 and "admin" in bad_role.output
    missing = run(["keys", "revoke", "nope"], env)
    assert missing.exit_code == 1 and "no API key with id 'nope'" in missing.output


def test_callbacks_list_and_done(tmp_path):
    from kbsearch.stores.callbacks import CallbackRequest, SQLiteCallbackStore

    db = tmp_path / "channels.sqlite3"
    env = {"KBSEARCH_CHANNELS_DB": str(db)}
    store = SQLiteCallbackStore(db)
    first = store.add(CallbackRequest("Erika Muster", "+49 30 1234567", "morning",
                                      "Abschlag zu hoch", "de", "search: abschlag"), now=1000.0)
    second = store.add(CallbackRequest("John Doe", "0301234567", "asap", "Router offline",
                                       "en", "article: router-stoerung"), now=2000.0)
    store.close()
    listed = json.loads(run(["callbacks", "list", "--json"], env).stdout)
    assert [e["reference"] for e in listed] == [second.reference, first.reference]
    assert listed[1] | {"created": None} == {
        "reference": first.reference, "created": None, "status": "open",
        "name": "Erika Muster", "phone": "+49 30 1234567", "preferred_time": "morning",
        "language": "de", "description": "Abschlag zu hoch", "context": "search: abschlag"}
    table = run(["callbacks", "list"], env)
    assert table.exit_code == 0 and f"{first.reference}  open  1970-01-01 00:16 UTC" in table.output
    assert "  Erika Muster, +49 30 1234567 (de)\n  Abschlag zu hoch\n  came from: search: " \
           "abschlag" in table.output
    done = run(["callbacks", "done", first.reference.lower()], env)
    assert done.exit_code == 0 and f"{first.reference} (Erika Muster" in done.output
    assert [e["reference"] for e in json.loads(
        run(["callbacks", "list", "--json"], env).stdout)] == [second.reference]
    everything = json.loads(run(["callbacks", "list", "--status", "all", "--json"], env).stdout)
    assert {e["reference"]: e["status"] for e in everything} == {
        first.reference: "done", second.reference: "open"}
    assert run(["callbacks", "done", "--reopen", first.reference], env).exit_code == 0
    assert len(json.loads(run(["callbacks", "list", "--json"], env).stdout)) == 2
    unknown = run(["callbacks", "done", "RR-AAAAAA"], env)
    assert unknown.exit_code == 1 and "no callback request RR-AAAAAA" in unknown.output
    malformed = run(["callbacks", "done", "4711"], env)
    assert malformed.exit_code == 1 and "not of the form RR-XXXXXX" in malformed.output
    assert "no done callback requests" in run(
        ["callbacks", "list", "--status", "done"], env).output


def test_index_calibrates_on_the_judged_queries_beside_the_articles(tmp_path, fake_model):
    """``kbsearch index`` refits the calibration on the knowledge base's own judgments.tsv
    (beside its articles) once per build content and judgments file, keeps it only if not
    worse, and reports an invalid judgments file (exit status 2, the build kept)."""
    from .conftest import ARTICLES

    kb = tmp_path / "kb"
    shutil.copytree(ARTICLES, kb)
    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_ARTICLES": str(kb),
           "KBSEARCH_INDEX": str(tmp_path / "idx"),
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "w")}
    first = run(["index", "-q"], env)
    assert first.exit_code == 0, first.output
    assert ("calibration on 62 judged queries (62 in judgments.tsv, 0 agents' verdicts): "
            "promoted") in first.output
    listed = json.loads(run(["weights", "list", "--json"], env).stdout)
    assert listed[-1]["current"] and listed[-1]["status"] == "promoted"
    document = json.loads((tmp_path / "w" / f"{listed[-1]['version']}.json").read_text())
    assert set(document["report"]["calibrated_for"]) == {"judgments_sha256", "index_sha256"}
    again = run(["index", "-q"], env)  # nothing changed: a new build of the same index
    assert "calibration: already fitted" in again.output
    assert len(json.loads(run(["weights", "list", "--json"], env).stdout)) == len(listed)
    skipped = run(["index", "-q", "--no-calibrate"], env)
    assert "calibration" not in skipped.output
    with (kb / "judgments.tsv").open("a", encoding="utf-8") as judgments:
        judgments.write("wie melde ich den zählerstand\tgibt-es-nicht\n")
    bad = run(["index", "-q"], env)
    assert bad.exit_code == 2 and "judgments.tsv:" in bad.output and "gibt-es-nicht" in bad.output
    assert "index " in bad.output  # the build itself went through


def test_the_judgments_follow_the_articles_folder(tmp_path):
    from kbsearch.config import load_settings
    from kbsearch.learning.calibration import judgments_file

    bundled = load_settings(environ={})
    assert judgments_file(bundled) == bundled.home / "articles" / "judgments.tsv"
    elsewhere = load_settings(environ={"KBSEARCH_ARTICLES": str(tmp_path / "kb")})
    assert judgments_file(elsewhere) == tmp_path / "kb" / "judgments.tsv"
    chosen = load_settings(environ={"KBSEARCH_ARTICLES": str(tmp_path / "kb"),
                                    "KBSEARCH_JUDGMENTS": str(tmp_path / "j.tsv")})
    assert judgments_file(chosen) == tmp_path / "j.tsv"


def test_judge_records_what_the_editor_types(tmp_path, sample_index, fake_model):
    """Each query with its top candidates; the numbers typed are appended at once as
    'query<TAB>ids'; Enter records nothing, 's' skips, bad input is asked again, 'q'
    stops; queries already judged are not asked again; the log is the default source."""
    judgments = tmp_path / "judgments.tsv"
    judgments.write_text("# judged\nrouter blinkt rot\trouter-stoerung", "utf-8")  # no \\n
    queries = tmp_path / "queries.txt"
    queries.write_text("# to judge\nRouter  blinkt ROT\nZählerstand melden\n"
                       "Lastschrift ändern\nwo ist mein paket\nAbschlag ändern\n"
                       "Rufnummer mitnehmen\n", "utf-8")
    env = {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index),
           "KBSEARCH_FEEDBACK_DB": str(tmp_path / "f.sqlite3"),
           "KBSEARCH_WEIGHTS_DIR": str(tmp_path / "w")}
    args = ["judge", "--from", str(queries), "--judgments", str(judgments), "-k", "3"]
    # Zählerstand: 9 is out of range, then 1 and 2; Lastschrift: none; paket: skip;
    # Abschlag: 1; then quit before Rufnummer
    result = CliRunner().invoke(main, args, env=env, input="9\n1, 2\n\ns\n1\nq\n")
    assert result.exit_code == 0, result.output
    assert "Router" not in result.output.split("[1/")[1].splitlines()[0]  # judged already
    assert "type numbers from 1 to 3" in result.output
    assert "recorded 2 judged queries" in result.output
    lines = judgments.read_text("utf-8").splitlines()
    assert lines[:2] == ["# judged", "router blinkt rot\trouter-stoerung"]
    added = dict(line.split("\t") for line in lines[2:])
    assert list(added) == ["Zählerstand melden", "Abschlag ändern"]
    assert len(added["Zählerstand melden"].split(",")) == 2
    from kbsearch.learning.evaluation import load_judgments

    assert len(load_judgments(judgments)) == 3  # the file stays valid
    both = CliRunner().invoke(main, [*args, "--gaps"], env=env)
    assert both.exit_code == 2 and "choose one source" in both.output
    from kbsearch.service import SearchService

    from .conftest import make_settings

    service = SearchService(make_settings(tmp_path, index=sample_index,
                                          feedback_db=tmp_path / "f.sqlite3"))
    for query in ("Gasgeruch", "gasgeruch", "Umzug melden"):
        service.search(query)
    logged = CliRunner().invoke(main, ["judge", "--judgments", str(judgments), "-k", "2"],
                                env=env, input="q\n")
    assert "[1/2] Gasgeruch" in logged.output  # most frequent first, as most often typed
