"""`promptops render`: the exact messages a call would send, or exit 2 with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "support-assistant"


def run(*args: str, cwd: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promptops", "render", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_renders_messages_with_vars_file(tmp_path: Path) -> None:
    variables = tmp_path / "vars.yaml"
    variables.write_text("question: How long do refunds take?\npassages: [Refunds take 5 days., Plans cost $12.]\n")
    done = run("support.answer", "--vars", str(variables))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["id"] == "support.answer" and document["model"] == "openai/gpt-4o-mini"
    assert len(document["version"]) == 12
    user = document["messages"][-1]
    assert user["role"] == "user"
    assert "[1] Refunds take 5 days." in user["content"] and "[2] Plans cost $12." in user["content"]
    assert "How long do refunds take?" in user["content"]


def test_inputs_are_validated_against_the_schema() -> None:
    done = run("support.answer", "--var", "question=hi")
    assert done.returncode == 2
    assert "'passages' is a required property" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_prompt_and_hostile_template(tmp_path: Path) -> None:
    done = run("no.such.prompt")
    assert done.returncode == 2 and "no prompt has id 'no.such.prompt'" in done.stderr
    (tmp_path / "loop.prompt.yaml").write_text(
        "id: loop\nmodel: {name: openai/gpt-4o-mini}\n"
        "messages: [{role: user, content: '{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}'}]\n"
    )
    done = run("loop", cwd=tmp_path)
    assert done.returncode == 2
    assert "loop iterations" in done.stderr and "Traceback" not in done.stderr
