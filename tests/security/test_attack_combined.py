"""Issue 15, "Verified by": one pull request that tries items 1 to 5 at once, checked by `promptops ci`
in a simulated GitHub Actions job.

The PR sends a new prompt's calls (and the key) to its own server, lifts the safety settings in its
promptops.yaml and points them outside the repository, has the model echo the organisation's key,
names a file and a YAML key with workflow commands, puts a mention, an issue reference and URLs in
the comment's diff, and finds another bot's comment already carrying our marker. The check must fail
(exit 1) with findings naming the files, publish no secret anywhere, write one comment of its own,
and read or write nothing outside the repository.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers.actions import (
    BOT,
    INJECTED,
    KEY,
    KEY_ANY_FORM,
    NAMES,
    NESTED_LOOP,
    NOW,
    OWNER_REPO,
    PR,
    PROMPT,
    TOKEN,
    actions_job,
    repository,
    suite,
    visible_text,
    workflow_commands,
)
from helpers.repo import read_outputs
from promptops.github import marker
from promptops.testing import Rule, StubServer
from promptops.testing.github import FakeGitHub

CANARY = "canary-from-outside-the-repository"
HOSTILE_FOLDER = "@acme/everyone/#12"
BASE_LIMITS = "lint: {render_limits: {max_loop_iterations: 1000}}\n"  # the head drops it, and loops past it


def hostile_head(attacker: StubServer, outside: Path) -> dict[str, str]:
    """Every file the PR adds or changes."""
    config = (f"paths: {{include: ['.', '/', '{outside}', '../outside']}}\n"
              f"eval: {{concurrency: 4, cache: '{outside}/evil.db', max_cost_usd: 1000}}\n")  # and no render limit
    elsewhere = (PROMPT.replace("support.greet", "support.elsewhere").replace("STYLE", "Be brief.")
                 .replace("max_tokens: 50}", f"max_tokens: 50, extra: {{base_url: '{attacker.base_url}', "
                                              "mock_response: 'hello ada hello grace hello linus hello ken'}}"))
    broken = PROMPT.replace("support.greet", "support.broken").replace(
        "messages:", json.dumps({INJECTED.format("key"): 1}).strip("{}") + "\nmessages:")
    linked = PROMPT.replace("support.greet", "support.linked").replace(
        "max_tokens: 50}", "max_tokens: 50, stop: ['see https://evil.example/x', 'www.evil.example']}").replace(
        "STYLE", "Be warm. Ask @acme/everyone about #12.")
    looping = PROMPT.replace("support.greet", "support.looping").replace("STYLE", NESTED_LOOP)
    return {"promptops.yaml": config,
            "greet.prompt.yaml": PROMPT.replace("STYLE", "Be leaky."),
            "looping.prompt.yaml": looping,
            "elsewhere.prompt.yaml": elsewhere,
            "elsewhere.eval.yaml": suite("support.elsewhere"),
            "broken.prompt.yaml": broken,
            INJECTED.format("suite") + ".eval.yaml": suite(),
            f"{HOSTILE_FOLDER}/linked.prompt.yaml": linked,
            f"{HOSTILE_FOLDER}/linked.eval.yaml": suite("support.linked", "{max_pass_rate_drop: 0.1}")}


def test_one_pr_trying_every_attack_at_once_fails_cleanly_and_leaks_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stolen.prompt.yaml").write_text(
        f"id: stolen\nmodel: {{name: openai/gpt-4o-mini}}\nmessages: [{{role: user, content: {CANARY}}}]\n")
    home = tmp_path / "home"
    home.mkdir()
    echo = [Rule(system="leaky", match=f"Greet {n}.", reply=f"Hello {n}! Your key is {KEY}, and *{KEY}*.")
            for n in NAMES]
    with StubServer(rules=[*echo, *(Rule(match=f"Greet {n}.", reply=f"Hello {n}, welcome!") for n in NAMES)]) as stub, \
            StubServer(default_reply="hello ada hello grace hello linus hello ken") as attacker, \
            FakeGitHub(token=TOKEN) as github:
        root = repository(tmp_path / "repo",
                          {"promptops.yaml": f"eval: {{concurrency: 4}}\n{BASE_LIMITS}",
                           "greet.prompt.yaml": PROMPT.replace("STYLE", "Be warm."), "greet.eval.yaml": suite()},
                          hostile_head(attacker, outside))
        foreign = github.add_comment(OWNER_REPO, PR, f"{marker('promptops', NOW)}\nplanted by another app",
                                     user="echo-app[bot]")
        job = actions_job(tmp_path, root, github.api_url, stub, HOME=str(home), OPENAI_API_KEY=KEY)
        done = job.ci(expect=1)
        comments = github.comments(OWNER_REPO, PR)
        report = json.loads((job.temp / "report" / "report.json").read_text())
        sinks = {"stdout": done.stdout, "stderr": done.stderr, **job.published(),
                 **{f"comment {c['id']}": c["body"] for c in comments}}
        attacker_calls = attacker.calls

    # 1. The PR chose neither the endpoint nor the safety settings, nor the files read or written.
    assert attacker_calls == 0
    findings = {(f["path"], f["code"]) for f in report["lint"]["findings"]}
    assert ("elsewhere.prompt.yaml", "PO604") in findings, findings
    config_findings = {(f["line"], f["code"]) for f in report["lint"]["findings"] if f["path"] == "promptops.yaml"}
    assert {(1, "PO113"), (2, "PO113")} <= config_findings, report["lint"]["findings"]
    assert any(warning.startswith("the change's promptops.yaml cannot be used, so the check ran with the base's")
               for warning in report["verdict"]["warnings"]), report["verdict"]
    assert any(f["path"] == "looping.prompt.yaml" and "1,000 loop iterations" in f["message"]
               for f in report["lint"]["findings"]), report["lint"]["findings"]
    assert any(path == "broken.prompt.yaml" for path, _ in findings)
    # The refused prompt's suite is named as not run, and why; not as a pass rate of no case.
    assert any(reason.startswith("elsewhere.eval.yaml: not run: elsewhere.prompt.yaml:2:")
               for reason in report["verdict"]["failures"]), report["verdict"]
    assert sorted(p.name for p in outside.iterdir()) == ["stolen.prompt.yaml"]  # no cache written there
    # In the home folder only promptops's own cache (compiled schemas, token counts), with no secret in it.
    written = [p for p in home.rglob("*") if p.is_file()]
    assert all(p.parent == home / ".cache" / "promptops" for p in written), written
    for path in written:
        text = path.read_bytes().decode("latin-1")
        assert not KEY_ANY_FORM.search(text) and CANARY not in text, path
    # 2. No secret in any sink, in any escaped form; the model's echo did arrive, redacted.
    for name, text in sinks.items():
        assert not KEY_ANY_FORM.search(text), name
        assert TOKEN not in text and CANARY not in text, name
    assert "Your key is ***" in (job.temp / "report" / "report.json").read_text()
    # 3. No workflow command from the PR's file names or keys in the job's log.
    for stream in (done.stdout, done.stderr):
        assert workflow_commands(stream) == [], stream
    assert read_outputs(job.temp / "output")["verdict"] == "fail"
    # 4. + 5. One comment of ours, inert; the other bot's comment carrying our marker is left as it was.
    ours = [c for c in comments if c["user"]["login"] == BOT]
    assert len(ours) == 1 and len(comments) == 2
    assert [c["body"] for c in comments if c["id"] == foreign["id"]] == [foreign["body"]]
    text = visible_text(ours[0]["body"])
    assert "everyone" in ours[0]["body"] and "evil.example" in ours[0]["body"]
    assert not re.search(r"@\w", text) and not re.search(r"#\d", text) and not re.search(r"\w+://|www\.", text)

