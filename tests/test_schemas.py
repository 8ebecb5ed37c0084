"""The JSON Schemas: valid draft 2020-12, documented field by field, and the
compiled fast path agrees with jsonschema on every fixture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastjsonschema import JsonSchemaException
from jsonschema import Draft202012Validator

from promptops import resources
from promptops.schemacache import fast_validator
from promptops.specs import kind_of
from promptops.yamlparse import YamlError, parse

KINDS = ("prompt", "retrieval", "eval", "config")
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = resources.schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _properties(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named field the schema defines, wherever it is nested."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}.{name}", sub
        for key, sub in node.items():
            if key == "if":
                continue  # conditions name fields defined elsewhere; they are not fields
            if key == "properties":
                for name, inner in sub.items():
                    yield from _properties(inner, f"{path}.{name}")
            elif isinstance(sub, (dict, list)):
                yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{i}]")


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_a_description(kind: str) -> None:
    fields = list(_properties(resources.schema(kind), kind))
    assert len(fields) > 5
    undocumented = [name for name, sub in fields if not (isinstance(sub, dict) and sub.get("description"))]
    assert undocumented == []


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_strict_about_unknown_keys(kind: str) -> None:
    schema = resources.schema(kind)
    assert schema["additionalProperties"] is False
    with pytest.raises(JsonSchemaException):
        fast_validator(kind)({"no_such_key": 1})


def _mappings() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every example and fixture that reaches schema validation (it parses to a mapping)."""
    for folder in ("examples", "tests/fixtures", "templates/init"):
        for path in sorted((REPO / folder).rglob("*.yaml")):
            if kind_of(path) not in KINDS or path.is_symlink():
                continue
            try:
                data, _ = parse(path.read_text(encoding="utf-8"))
            except (YamlError, UnicodeDecodeError):
                continue
            if isinstance(data, dict):
                yield path, data


@pytest.mark.parametrize("path,data", list(_mappings()),
                         ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else "")
def test_fast_and_full_validators_agree(path: Path, data: dict[str, Any]) -> None:
    """The compiled validator decides validity alone on the hot path; it must never disagree."""
    kind = kind_of(path)
    full_valid = not list(Draft202012Validator(resources.schema(kind)).iter_errors(data))
    try:
        fast_validator(kind)(data)
        fast_valid = True
    except JsonSchemaException:
        fast_valid = False
    assert fast_valid == full_valid


def test_dataset_case_schema_is_the_suite_case_definition() -> None:
    case = resources.schema("eval-case")
    assert case["$ref"] == "#/$defs/case"
    validate = fast_validator("eval-case")
    validate({"id": "a", "vars": {"q": "x"}, "expected": "y"})
    with pytest.raises(JsonSchemaException):
        validate({"id": "a", "expcted": "y"})


def test_compiled_validator_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_CACHE_DIR", str(tmp_path))
    fast_validator("retrieval")
    cached = list(tmp_path.glob("validate_retrieval_*.py"))
    assert len(cached) == 1
    cached[0].write_text("this is not python (")  # a damaged cache must not break lint
    with pytest.raises(JsonSchemaException):
        fast_validator("retrieval")({"id": "x"})


def test_schemas_are_json_files_editors_can_load() -> None:
    for kind in KINDS:
        text = (resources.data_dir("schemas") / f"{kind}.schema.json").read_text(encoding="utf-8")
        assert json.loads(text)["title"]


@pytest.mark.parametrize("kind", ["lock", "release"])
def test_release_schemas_are_valid_documented_and_strict(kind: str) -> None:
    """promptops.lock.yaml and release snapshots: written by promptops, read by editors, lint and apps."""
    schema = resources.schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False and schema["title"]
    fields = list(_properties(schema, kind))
    assert len(fields) > 5
    assert [name for name, sub in fields if not (isinstance(sub, dict) and sub.get("description"))] == []
    with pytest.raises(JsonSchemaException):
        fast_validator(kind)({"schema_version": 1, "no_such_key": 1})


@pytest.mark.parametrize("schema, version", [("eval-results", "EVAL_RESULTS"), ("cost-report", "COST_REPORT")])
def test_a_report_schema_holds_the_version_its_renderer_writes(schema: str, version: str) -> None:
    from promptops.report import versions

    document = json.loads((resources.data_dir("schemas") / f"{schema}.schema.json").read_text(encoding="utf-8"))
    assert document["properties"]["schema_version"]["const"] == getattr(versions, version)
