"""Attacks on the sticky PR comment (issue 15, item 5): hijacked by another bot, blocked by a marker
from the future, rolled back by a racing older run, a proxy's endless pages, a broken token, a
body at GitHub's limit. FakeGitHub over real HTTP; the last three through `promptops ci`."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers.actions import BOT, NOW, OWNER_REPO, PR, PROMPT, TOKEN, actions_job, comment_body, repository
from promptops.github import COMMENT_LIMIT, GitHubClient, RunOrder, marker, upsert_sticky_comment
from promptops.testing import Rule, StubServer
from promptops.testing.github import FakeGitHub, Recorded


@pytest.fixture
def gh():
    with FakeGitHub(token=TOKEN) as fake:  # GITHUB_TOKEN: GET /user is a 403
        yield fake


def upsert(fake: FakeGitHub, body: str, generated_at: datetime, **kwargs):
    with GitHubClient(fake.api_url, TOKEN, sleep=lambda s: None, timeout_s=5) as client:
        return upsert_sticky_comment(client, OWNER_REPO, PR, body, generated_at=generated_at, **kwargs)


def bodies(fake: FakeGitHub) -> list[str]:
    return [c["body"] for c in fake.comments(OWNER_REPO, PR)]


def test_another_bots_comment_with_our_marker_is_not_taken_over(gh: FakeGitHub) -> None:
    foreign = f"{marker('promptops', NOW - timedelta(minutes=5))}\nechoed by another app"
    gh.add_comment(OWNER_REPO, PR, foreign, user="echo-app[bot]")
    result = upsert(gh, "the real report", NOW)
    assert result.action == "created"
    assert bodies(gh)[0] == foreign and bodies(gh)[1].endswith("the real report\n")


def test_a_marker_from_the_future_blocks_no_later_run(gh: FakeGitHub) -> None:
    """A workflow that echoes PR text as github-actions[bot] can plant a marker dated 2999: GitHub
    wrote that comment now, so its date is forged and the report goes over it."""
    future = datetime(2999, 1, 1, tzinfo=timezone.utc)
    planted = gh.add_comment(OWNER_REPO, PR, f"{marker('promptops', future)}\nforged", user=BOT)
    gh.add_comment(OWNER_REPO, PR, f"{marker('promptops', future)}\nforged too", user="echo-app[bot]")
    result = upsert(gh, "the real report", NOW)
    assert (result.action, result.comment_id) == ("updated", planted["id"])
    assert upsert(gh, "the next report", NOW + timedelta(seconds=1)).action == "updated"
    assert bodies(gh)[0].endswith("the next report\n") and bodies(gh)[1].endswith("forged too")


def patches(request: Recorded) -> bool:
    return request.method == "PATCH"


def test_an_older_run_that_lists_before_a_newer_run_writes_does_not_roll_it_back(gh: FakeGitHub) -> None:
    first = gh.add_comment(OWNER_REPO, PR, f"{marker('promptops', NOW - timedelta(minutes=9))}\nreport 1", user=BOT)
    newer = f"{marker('promptops', NOW)}\nreport 3"
    # The newer run's PATCH lands just after the older run has read the list of comments.
    gh.on_request(lambda r: r.method == "GET" and r.path.endswith(f"/issues/{PR}/comments"),
                  lambda: gh.edit_comment(first["id"], newer), after=True)
    result = upsert(gh, "report 2", NOW - timedelta(minutes=1))
    assert result.action == "skipped-newer"
    assert bodies(gh) == [newer]


def test_an_older_runs_patch_landing_last_is_undone(gh: FakeGitHub) -> None:
    first = gh.add_comment(OWNER_REPO, PR, f"{marker('promptops', NOW - timedelta(minutes=9))}\nreport 1", user=BOT)
    older = f"{marker('promptops', NOW - timedelta(minutes=1))}\nreport 2"
    # The older run's PATCH, sent before the newer one's, reaches GitHub just after it.
    gh.on_request(patches, lambda: gh.edit_comment(first["id"], older), after=True)
    result = upsert(gh, "report 3", NOW)
    assert result.action == "updated"
    assert bodies(gh) == [f"{marker('promptops', NOW)}\nreport 3\n"]
    assert [r.method for r in gh.requests].count("PATCH") == 2


def test_a_rerun_of_an_older_run_does_not_overwrite_a_newer_runs_report(gh: FakeGitHub) -> None:
    """Runs, not clocks, order reports: attempt 2 of run 100 starts after run 101 wrote, but checks an older push."""
    assert upsert(gh, "report of run 101", NOW - timedelta(minutes=5), run=RunOrder(101)).action == "created"
    result = upsert(gh, "report of run 100, attempt 2", NOW, run=RunOrder(100, 2))
    assert result.action == "skipped-newer" and "run 101.1" in result.reason
    assert upsert(gh, "report of run 102", NOW + timedelta(seconds=1), run=RunOrder(102)).action == "updated"


# -- through `promptops ci` ------------------------------------------------------------------------


def lint_only_repository(tmp_path: Path) -> Path:
    return repository(tmp_path / "repo", {"promptops.yaml": "eval: {concurrency: 4}\n",
                                          "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm.")},
                      {"greet.prompt.yaml": PROMPT.replace("STYLE", "Be brief.")})


def test_a_proxy_that_always_links_a_next_page_does_not_hang_ci(tmp_path: Path) -> None:
    root = lint_only_repository(tmp_path)
    with FakeGitHub(token=TOKEN, endless_pages=True) as github:
        job = actions_job(tmp_path, root, github.api_url, None)
        started = time.monotonic()
        done = job.ci("--no-eval", expect=3, timeout=120)
        assert time.monotonic() - started < 60
        assert "comment: GitHub failed" in done.stderr and "still a next page after 100 pages" in done.stderr
        assert github.comments(OWNER_REPO, PR) == []


def test_a_token_with_a_line_break_is_a_clear_usage_error(tmp_path: Path) -> None:
    root = lint_only_repository(tmp_path)
    with FakeGitHub(token=TOKEN) as github:
        job = actions_job(tmp_path, root, github.api_url, None, GITHUB_TOKEN=f"{TOKEN}\nghs_second_line")
        done = job.ci("--no-eval", expect=2)
        assert "GITHUB_TOKEN holds a line break" in done.stderr and TOKEN not in done.stderr
        assert github.requests == []


def test_a_body_at_the_limit_stays_within_it_once_secrets_are_redacted(tmp_path: Path) -> None:
    """Forty suites regress, each answer full of URL passwords of one letter: "***" is longer than
    "p", so a body cut to GitHub's limit before redaction would end up over it."""
    answer = "db://:p@h " * 170
    prompt = PROMPT.replace("max_tokens: 50", "max_tokens: 4000")
    files = {"promptops.yaml": "eval: {concurrency: 8}\n", "greet.prompt.yaml": prompt.replace("STYLE", "Be warm.")}
    files |= {f"suite{n:02d}.eval.yaml": "prompt: support.greet\ncases:\n"
              f"  - {{id: case{n}, vars: {{name: n{n}}}, assert: [{{type: icontains, value: hello}}]}}\n"
              for n in range(40)}
    root = repository(tmp_path / "repo", files, {"greet.prompt.yaml": prompt.replace("STYLE", "Be verbose.")})
    rules = [Rule(system="verbose", reply=answer), Rule(reply="Hello there")]
    with StubServer(rules=rules) as stub, FakeGitHub(token=TOKEN) as github:
        job = actions_job(tmp_path, root, github.api_url, stub)
        job.ci(expect=0)
        body = comment_body(github)
    assert len(body) <= COMMENT_LIMIT and ":p@" not in body
    assert body.count("Regressed cases in suite") >= 30 and len(body) > COMMENT_LIMIT - 5_000
