import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from kbsearch.cli import main

from .conftest import MODEL, ROOT
from .test_evaluation import write_beir


@pytest.fixture
def env(tmp_path, sample_index):
    return {"KBSEARCH_MODEL": str(MODEL), "KBSEARCH_INDEX": str(sample_index)}


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


def test_index_command_builds_and_reports(small_kb, tmp_path):
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


def test_index_command_missing_folder(tmp_path):
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


def test_eval_command_json(tmp_path):
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


def test_settings_command_lists_variables():
    result = run(["settings"], {})
    assert "KBSEARCH_MODEL" in result.output and "KBSEARCH_INDEX" in result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_a_real_gunicorn_server(env, tmp_path):
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
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
