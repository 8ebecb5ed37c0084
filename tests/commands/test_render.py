"""`promptops render`: the exact messages a call would send, or exit 2 with a reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers.cli import run_promptops

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-assistant"


def run(*args: str, cwd: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return run_promptops(["render", *args], cwd=cwd)


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
        "messages: [{role: user, content: "
        "'{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}'}]\n"
    )
    done = run("loop", cwd=tmp_path)
    assert done.returncode == 2
    assert "loop iterations" in done.stderr and "Traceback" not in done.stderr


def _number_prompt(folder: Path) -> None:
    (folder / "n.prompt.yaml").write_text(
        "id: n\nmodel: {name: openai/gpt-4o-mini}\n"
        "inputs:\n  type: object\n  properties:\n"
        "    n: {type: [integer, string]}\n    tags: {type: array, items: {type: string}}\n"
        "    opts: {type: object}\n    flag: {type: [boolean, 'null']}\n    city: {type: string}\n"
        "messages: [{role: user, content: '{{ n | pprint }} {{ tags | pprint }} {{ opts | pprint }} "
        "{{ flag | pprint }} "
        "{{ city | pprint }}'}]\n"
    )


def test_var_values_are_json_when_they_parse_and_strings_otherwise(tmp_path: Path) -> None:
    _number_prompt(tmp_path)
    done = run("n", "--var", "n=3", "--var", 'tags=["a", "b"]', "--var", 'opts={"k": 1}', "--var", "flag=true",
               "--var", "city=Paris", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["messages"][0]["content"] == "3 ['a', 'b'] {'k': 1} True 'Paris'"


def test_a_quoted_json_string_forces_a_string(tmp_path: Path) -> None:
    _number_prompt(tmp_path)
    done = run("n", "--var", 'n="3"', "--var", 'tags=[]', "--var", 'opts="{}"', "--var", "flag=null",
               "--var", "city=NaN", cwd=tmp_path)
    assert done.returncode == 2 and "opts: '{}' is not of type 'object'" in done.stderr  # a string, as asked
    done = run("n", "--var", 'n="3"', "--var", 'tags=[]', "--var", 'opts={}', "--var", "flag=null",
               "--var", "city=NaN", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["messages"][0]["content"] == "'3' [] {} None 'NaN'"


def test_a_var_of_the_wrong_json_type_is_a_schema_error(tmp_path: Path) -> None:
    _number_prompt(tmp_path)
    done = run("n", "--var", "tags=3", cwd=tmp_path)
    assert done.returncode == 2
    assert "tags: 3 is not of type 'array'" in done.stderr and "Traceback" not in done.stderr
