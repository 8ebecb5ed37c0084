"""The geo.capital prompt, its suite and the stub that answers it: the project the eval, CI, release and attack
tests build on."""

from __future__ import annotations

import pytest

from promptops.testing import Rule, StubServer

COUNTRIES = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo", "Peru": "Lima",
             "Kenya": "Nairobi", "Chile": "Santiago", "Egypt": "Cairo"}


PROMPT = """\
id: geo.capital
model: {name: openai/gpt-4o-mini, params: {temperature: 0, max_tokens: 20}}
inputs: {type: object, required: [country], properties: {country: {type: string}}}
messages:
  - {role: system, content: "SYSTEM"}
  - {role: user, content: "What is the capital of {{ country }}?"}
"""
SUITE = "prompt: geo.capital\ngates: {max_pass_rate_drop: 0.05}\ncases:\n" + "".join(
    f"  - {{id: {c.lower()}, vars: {{country: {c}}}, expected: {city}, "
    f"assert: [{{type: contains, value: '{{{{ expected }}}}'}}]}}\n"
    for c, city in COUNTRIES.items()
)


@pytest.fixture(scope="module")
def stub():
    rules = [Rule(system="rudely", match="capital", reply="No idea.")]
    rules += [Rule(match=country, reply=city) for country, city in COUNTRIES.items()]
    with StubServer(rules=rules, default_reply="hello") as server:
        yield server
