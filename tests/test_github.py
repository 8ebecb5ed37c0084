"""promptops.github against FakeGitHub: real HTTP on loopback, nothing mocked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers.repo import read_outputs
from promptops.github import (
    COMMENT_LIMIT,
    MAX_PAGES,
    GitHubClient,
    GitHubError,
    GitHubInputError,
    RunOrder,
    actions_context,
    append_step_summary,
    body_limit,
    marker,
    upsert_sticky_comment,
    write_outputs,
)
from promptops.testing.github import FORBIDDEN, FakeGitHub, GitHubFault

TOKEN = "ghs_" + "S3cr3tT0k3nValue" * 2
REPO, PR = "octo/prompts", 7
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)


@pytest.fixture
def gh():
    with FakeGitHub(token=TOKEN) as fake:
        yield fake


def client_for(fake: FakeGitHub, sleeps: list[float] | None = None, **kwargs) -> GitHubClient:
    """A client whose retries record their waits in ``sleeps`` instead of sleeping."""
    return GitHubClient(fake.api_url, TOKEN, sleep=(sleeps if sleeps is not None else []).append, timeout_s=5, **kwargs)


def upsert(fake: FakeGitHub, body: str, generated_at: datetime = T0, **kwargs):
    with client_for(fake) as client:
        return upsert_sticky_comment(client, REPO, PR, body, generated_at=generated_at, **kwargs)


def writes(fake: FakeGitHub) -> list[str]:
    return [r.method for r in fake.requests if r.method != "GET"]


def test_creates_once_then_updates_the_same_comment_in_place(gh):
    first = upsert(gh, "## Report\ncost: +$3")
    assert first.action == "created" and first.comment_id is not None and first.url
    [comment] = gh.comments(REPO, PR)
    assert comment["body"] == f"{marker('promptops', T0)}\n## Report\ncost: +$3\n"
    assert comment["body"].startswith("<!-- promptops-report key=promptops generated=2026-11-23T20:00:00")

    second = upsert(gh, "## Report\ncost: +$5", T0 + timedelta(minutes=5))
    assert second.action == "updated" and second.comment_id == first.comment_id
    [comment] = gh.comments(REPO, PR)
    assert comment["body"].endswith("cost: +$5\n")
    assert writes(gh) == ["POST", "PATCH"]
    post = next(r for r in gh.requests if r.method == "POST")
    assert post.path == f"/repos/{REPO}/issues/{PR}/comments"
    assert post.json == {"body": f"{marker('promptops', T0)}\n## Report\ncost: +$3\n"}
    assert post.headers["Authorization"] == "Bearer ***"
    assert post.headers["Accept"] == "application/vnd.github+json"
    assert post.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert post.headers["User-Agent"].startswith("promptops/")


def test_an_unchanged_report_is_not_written_again(gh):
    upsert(gh, "same text\n")
    result = upsert(gh, "same text", T0 + timedelta(hours=1))
    assert result.action == "unchanged"
    assert writes(gh) == ["POST"]


def test_an_older_run_never_overwrites_a_newer_report(gh):
    upsert(gh, "from the newer push", T0)
    result = upsert(gh, "from an older push that finished late", T0 - timedelta(seconds=1))
    assert result.action == "skipped-newer" and "2026-11-23T20:00:00" in result.reason
    assert writes(gh) == ["POST"]
    assert gh.comments(REPO, PR)[0]["body"].endswith("from the newer push\n")


def test_the_marked_comment_is_found_on_page_three(gh):
    for i in range(230):
        gh.add_comment(REPO, PR, f"chatter {i}", user=f"user{i % 7}")
    mine = gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nold report", user="github-actions[bot]")
    for i in range(5):
        gh.add_comment(REPO, PR, f"more chatter {i}")
    result = upsert(gh, "new report", T0 + timedelta(minutes=1))
    assert (result.action, result.comment_id) == ("updated", mine["id"])
    pages = [r.query for r in gh.requests if r.path.endswith(f"/issues/{PR}/comments") and r.method == "GET"]
    assert pages == [{"per_page": "100"}, {"per_page": "100", "page": "2"}, {"per_page": "100", "page": "3"}]
    assert len(gh.comments(REPO, PR)) == 236


def test_a_pasted_marker_cannot_take_the_report_over(gh):
    """A person who posts (or quotes) the marker, even with a far-future time, is not us."""
    future = marker("promptops", T0 + timedelta(days=3650))
    gh.add_comment(REPO, PR, f"{future}\nI am the report now", user="mallory")
    gh.add_comment(REPO, PR, f"> {marker('promptops', T0)}\n> quoted", user="github-actions[bot]")
    result = upsert(gh, "the real report")
    assert result.action == "created"
    assert [c["body"] for c in gh.comments(REPO, PR)][:2] == [f"{future}\nI am the report now",
                                                             f"> {marker('promptops', T0)}\n> quoted"]


def test_with_a_personal_token_only_that_users_comments_count():
    with FakeGitHub(token=TOKEN, identity="release-bot-user") as gh:
        gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nby someone else", user="other-user")
        ours = gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nold", user="release-bot-user")
        result = upsert(gh, "new", T0 + timedelta(seconds=1))
        assert (result.action, result.comment_id) == ("updated", ours["id"])


def test_keys_keep_reports_apart(gh):
    upsert(gh, "suite A", key="suite-a")
    result = upsert(gh, "suite B", key="suite-b")
    assert result.action == "created" and len(gh.comments(REPO, PR)) == 2
    with pytest.raises(ValueError, match="comment key"):
        upsert(gh, "x", key="bad key -->")


def test_duplicates_from_a_race_are_deleted_and_the_newest_updated(gh):
    older = gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nA", user="github-actions[bot]")
    newer = gh.add_comment(REPO, PR, f"{marker('promptops', T0 + timedelta(seconds=2))}\nB", user="github-actions[bot]")
    result = upsert(gh, "C", T0 + timedelta(minutes=1))
    assert (result.action, result.comment_id, result.reason) == ("updated", newer["id"], "")
    assert [c["id"] for c in gh.comments(REPO, PR)] == [newer["id"]]
    assert any(r.method == "DELETE" and r.path.endswith(f"/comments/{older['id']}") for r in gh.requests)


def test_github_enterprise_paths_go_under_api_v3():
    with FakeGitHub(token=TOKEN, enterprise=True) as gh:
        assert gh.api_url.endswith("/api/v3")
        assert upsert(gh, "report").action == "created"
        assert upsert(gh, "report 2", T0 + timedelta(seconds=1)).action == "updated"
        assert gh.requests and all(r.path.startswith("/api/v3/") for r in gh.requests)


def test_retries_5xx_and_rate_limits_then_succeeds(gh):
    gh.fail_next("500", "502", GitHubFault("secondary", wait_s=7), GitHubFault("429", wait_s=3),
                 GitHubFault("primary", wait_s=5))
    sleeps: list[float] = []
    with client_for(gh, sleeps, retries=5) as client:
        result = upsert_sticky_comment(client, REPO, PR, "report", generated_at=T0)
    assert result.action == "created" and len(gh.comments(REPO, PR)) == 1
    assert len(sleeps) == 5
    assert sleeps[2] == 7 and sleeps[3] == 3  # Retry-After honoured as sent
    assert 4 <= sleeps[4] <= 7  # until x-ratelimit-reset
    assert 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2  # exponential backoff with jitter


def test_a_dropped_connection_is_retried(gh):
    gh.fail_next("disconnect", "503")
    result = upsert(gh, "report")
    assert result.action == "created"


def test_gives_up_after_retries_without_showing_the_token(gh):
    gh.fail_next(*["503"] * 3)
    sleeps: list[float] = []
    with client_for(gh, sleeps, retries=2) as client, pytest.raises(GitHubError) as caught:
        upsert_sticky_comment(client, REPO, PR, "report", generated_at=T0)
    message = str(caught.value)
    assert "failed 3 times" in message and "HTTP 503" in message and "/user" in message
    assert TOKEN not in message and TOKEN not in repr(caught.value)
    assert len(sleeps) == 2


def test_a_rate_limit_wait_beyond_the_cap_gives_up_at_once(gh):
    gh.fail_next(GitHubFault("secondary", wait_s=3600))
    sleeps: list[float] = []
    with client_for(gh, sleeps) as client, \
            pytest.raises(GitHubError, match=r"wait 3,600 s, longer than promptops waits \(60 s\)"):
        upsert_sticky_comment(client, REPO, PR, "report", generated_at=T0)
    assert sleeps == []


def test_a_post_that_failed_after_writing_is_not_posted_twice(gh):
    gh.fail_next(GitHubFault("502", method="POST", after_write=True))
    result = upsert(gh, "report")
    assert result.action == "created"
    assert len(gh.comments(REPO, PR)) == 1 and writes(gh) == ["POST"]


@pytest.mark.parametrize("kind", ["502", "disconnect"])
def test_a_post_that_failed_before_writing_is_posted_again(gh, kind):
    gh.fail_next(GitHubFault(kind, method="POST"))
    assert upsert(gh, "report").action == "created"
    assert len(gh.comments(REPO, PR)) == 1 and writes(gh) == ["POST", "POST"]


def test_a_post_that_keeps_failing_gives_up(gh):
    gh.fail_next(*[GitHubFault("500", method="POST")] * 3)
    with client_for(gh, retries=2) as client, \
            pytest.raises(GitHubError, match=r"POST /repos/octo/prompts/issues/7/comments: HTTP 500 .*posted 3 times"):
        upsert_sticky_comment(client, REPO, PR, "report", generated_at=T0)
    assert gh.comments(REPO, PR) == [] and writes(gh) == ["POST"] * 3


def test_a_read_only_token_is_skipped_with_a_reason():
    with FakeGitHub(token=TOKEN, read_only=True) as gh:
        result = upsert(gh, "report")
        assert result.action == "skipped-forbidden" and result.comment_id is None
        assert FORBIDDEN in result.reason and "fork" in result.reason
        gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nold", user="github-actions[bot]")
        result = upsert(gh, "report", T0 + timedelta(seconds=1))
        assert result.action == "skipped-forbidden" and result.comment_id is not None


def test_a_rejected_token_is_an_error_naming_no_token():
    with FakeGitHub(token="ghs_the_right_one") as gh, pytest.raises(GitHubError, match="token was rejected") as caught:
        upsert(gh, "report")
    assert TOKEN not in str(caught.value)


def test_a_pagination_link_to_another_host_is_not_followed(gh):
    with client_for(gh) as client, pytest.raises(GitHubError, match="refusing to follow"):
        client.request("GET", "https://evil.example/repos/x/y/issues/1/comments")


def test_a_body_over_the_limit_is_refused_before_any_request(gh):
    longest_run = RunOrder(10 ** 20 - 1, 10 ** 6 - 1)  # body_limit() leaves room for any run's marker
    assert upsert(gh, "x" * body_limit(), run=longest_run).action == "created"
    assert len(gh.comments(REPO, PR)[0]["body"]) == COMMENT_LIMIT
    with pytest.raises(ValueError, match="65,536"):
        upsert(gh, "x" * (body_limit() + 1), T0 + timedelta(seconds=1), run=longest_run)


def test_naive_times_are_refused(gh):
    with pytest.raises(ValueError, match="timezone-aware"):
        upsert(gh, "x", datetime(2026, 1, 1))


# The context of a run.

def pull_request_event(base_repo: str = REPO, head_repo: str | None = REPO) -> dict:
    """Trimmed from a real pull_request event payload."""
    def repo(name: str | None) -> dict | None:
        return None if name is None else {"full_name": name, "name": name.split("/")[1], "fork": name != base_repo}

    return {
        "action": "synchronize",
        "number": PR,
        "pull_request": {
            "number": PR,
            "html_url": f"https://github.com/{base_repo}/pull/{PR}",
            "state": "open",
            "title": "Shorter system prompt",
            "user": {"login": "contributor", "type": "User"},
            "base": {"label": "octo:main", "ref": "main", "sha": "a" * 40, "repo": repo(base_repo)},
            "head": {"label": "contributor:shorter", "ref": "shorter", "sha": "b" * 40, "repo": repo(head_repo)},
        },
        "repository": {"full_name": base_repo},
        "sender": {"login": "contributor"},
    }


def actions_env(tmp_path: Path, event: dict | str, event_name: str = "pull_request") -> dict[str, str]:
    event_file = tmp_path / "event.json"
    event_file.write_text(event if isinstance(event, str) else json.dumps(event), encoding="utf-8")
    return {
        "GITHUB_ACTIONS": "true", "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        "GITHUB_SERVER_URL": "https://ghe.example.com", "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event_file), "GITHUB_RUN_ID": "123456",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_TOKEN": TOKEN,
    }


def test_actions_context_from_a_pull_request_event(tmp_path):
    ctx = actions_context(actions_env(tmp_path, pull_request_event()))
    assert ctx.in_actions and ctx.api_url == "https://ghe.example.com/api/v3"
    assert (ctx.repository, ctx.event_name, ctx.run_id, ctx.token) == (REPO, "pull_request", "123456", TOKEN)
    assert ctx.step_summary == tmp_path / "summary.md" and ctx.output == tmp_path / "output"
    assert ctx.run_url == f"https://ghe.example.com/{REPO}/actions/runs/123456"
    pr = ctx.pull_request
    assert pr is not None and (pr.repository, pr.number, pr.is_fork) == (REPO, PR, False)
    assert (pr.base_ref, pr.base_sha, pr.head_ref, pr.head_sha) == ("main", "a" * 40, "shorter", "b" * 40)
    assert pr.url == f"https://github.com/{REPO}/pull/{PR}"
    assert TOKEN not in repr(ctx)


@pytest.mark.parametrize("head_repo", ["contributor/prompts", None], ids=["fork", "deleted-fork"])
def test_fork_pull_requests_are_detected(tmp_path, head_repo):
    env = actions_env(tmp_path, pull_request_event(head_repo=head_repo), "pull_request_target")
    pr = actions_context(env).pull_request
    assert pr is not None and pr.is_fork and pr.repository == REPO


def test_outside_actions_and_other_events_have_no_pull_request(tmp_path):
    ctx = actions_context({})
    assert (ctx.in_actions, ctx.api_url, ctx.server_url, ctx.pull_request, ctx.token) == (
        False, "https://api.github.com", "https://github.com", None, None)
    assert actions_context(actions_env(tmp_path, "not even json", "push")).pull_request is None


@pytest.mark.parametrize("payload, problem", [
    ("{not json", "is not JSON"),
    (json.dumps({"pull_request": {"number": "7"}}), "no int at pull_request.number"),
    (json.dumps({"pull_request": {"number": 7, "base": {"ref": "main"}}}), "no str at pull_request.base.sha"),
    (json.dumps([1, 2]), "no int at pull_request.number"),
])
def test_a_broken_event_file_is_an_input_error_naming_it(tmp_path, payload, problem):
    env = actions_env(tmp_path, payload)
    with pytest.raises(GitHubInputError) as caught:
        actions_context(env)
    assert env["GITHUB_EVENT_PATH"] in str(caught.value) and problem in str(caught.value)


def test_a_missing_event_file_is_an_input_error_naming_it(tmp_path):
    env = {**actions_env(tmp_path, "{}"), "GITHUB_EVENT_PATH": str(tmp_path / "gone.json")}
    with pytest.raises(GitHubInputError, match="gone.json: cannot read"):
        actions_context(env)


# Outputs and the step summary.

def test_outputs_round_trip_multi_line_and_hostile_values(tmp_path):
    out = tmp_path / "output"
    out.write_text("earlier=1\n", encoding="utf-8")
    values = {
        "verdict": "pass",
        "pass-rate": "0.93",
        "notes": "line one\nline two\n\nEOF\nverdict=fail",
        "sneaky": "promptops_0123\nghadelimiter_x\n<<EOF",
    }
    write_outputs(out, values)
    write_outputs(out, {"report-path": "reports/promptops.md"})
    assert read_outputs(out) == {"earlier": "1", **values, "report-path": "reports/promptops.md"}
    with pytest.raises(ValueError, match="output name"):
        write_outputs(out, {"bad name\nx": "1"})


def test_step_summary_appends(tmp_path):
    summary = tmp_path / "summary.md"
    append_step_summary(summary, "# one")
    append_step_summary(summary, "two\n")
    assert summary.read_text(encoding="utf-8") == "# one\ntwo\n"


def test_pagination_stops_at_its_cap():
    with FakeGitHub(token=TOKEN, endless_pages=True) as gh, client_for(gh) as client:
        gh.add_comment(REPO, PR, "the only comment")
        with pytest.raises(GitHubError, match=f"still a next page after {MAX_PAGES} pages"):
            list(client.paginate(f"/repos/{REPO}/issues/{PR}/comments"))
        assert len(gh.requests) == MAX_PAGES


@pytest.mark.parametrize("token", [f"{TOKEN}\nsecond", f"{TOKEN} second", f"{TOKEN}\x00"])
def test_a_token_no_token_looks_like_is_an_input_error_that_does_not_show_it(tmp_path, token):
    env = {**actions_env(tmp_path, pull_request_event()), "GITHUB_TOKEN": f"  {token}\n"}
    with pytest.raises(GitHubInputError, match="GITHUB_TOKEN holds") as caught:
        actions_context(env)
    assert TOKEN not in str(caught.value)
    assert actions_context({**env, "GITHUB_TOKEN": f" {TOKEN}\n"}).token == TOKEN  # white space around is fine


def test_the_marker_names_the_run_and_old_markers_still_count(gh):
    run = RunOrder.parse("123456", "2")
    assert marker("promptops", T0, run).endswith(" run=123456.2 -->") and RunOrder.parse("12x", "1") is None
    old = gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nfrom before runs were in the marker",
                         user="github-actions[bot]")
    result = upsert(gh, "new", T0 + timedelta(seconds=1), run=run)
    assert (result.action, result.comment_id) == ("updated", old["id"])


def test_an_app_token_finds_its_own_bots_comments():
    with FakeGitHub(token=TOKEN, identity="release-app[bot]") as gh:  # GET /user: 403, as for any app token
        ours = gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nold", user="release-app[bot]")
        gh.add_comment(REPO, PR, f"{marker('promptops', T0)}\nnot ours", user="github-actions[bot]")
        result = upsert(gh, "new", T0 + timedelta(seconds=1), bot="release-app[bot]")
        assert (result.action, result.comment_id) == ("updated", ours["id"])
        assert actions_context({"PROMPTOPS_COMMENT_AUTHOR": "release-app[bot]"}).comment_author == "release-app[bot]"
