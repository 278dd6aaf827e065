"""The gunicorn settings keep the words of a search out of the access log."""

import pytest

from kbsearch.http import gunicorn_conf


def test_the_access_log_names_the_path_but_not_the_query_referrer_or_address():
    line = gunicorn_conf.access_log_format
    assert "%(U)s" in line and "%(s)s" in line  # path and status
    for personal in ("%(r)s", "%(q)s", "%(f)s", "%(h)s", "%({"):  # request line, query, ...
        assert personal not in line


def test_the_dockerfile_sets_up_and_serves_as_the_scripts_do():
    from .conftest import ROOT

    dockerfile = (ROOT / "Dockerfile").read_text("utf-8")
    assert "requirements.lock" in dockerfile  # the same pinned versions as scripts/setup.sh
    assert "RUN scripts/setup.sh" in dockerfile
    assert "-c python:kbsearch.http.gunicorn_conf" in dockerfile
    assert "'kbsearch.api:create_app()'" in dockerfile
    copied = {source for line in dockerfile.splitlines() if line.startswith("COPY ")
              for source in line.split()[1:-1]}
    setup = (ROOT / "scripts" / "setup.sh").read_text("utf-8")
    assert "requirements.lock" in setup and "pyproject.toml" in setup
    assert {"pyproject.toml", "requirements.lock", "kbsearch", "scripts", "articles"} <= copied


@pytest.mark.parametrize("name", [n for n in vars(gunicorn_conf) if not n.startswith("_")])
def test_every_name_of_the_settings_module_is_a_gunicorn_setting(name):
    from gunicorn.config import Config

    Config().set(name, getattr(gunicorn_conf, name))  # raises for an unknown setting


def test_no_two_servers_fight_over_one_control_socket():
    assert gunicorn_conf.control_socket_disable is True
