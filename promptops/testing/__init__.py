"""Test helpers: an OpenAI-compatible stub model server, and a fake of GitHub's comment API.

    from promptops.testing import Rule, StubServer

    with StubServer(rules=[Rule(match="capital of France", reply="Paris")], default_reply="I don't know") as stub:
        litellm.completion(**stub.client_kwargs(), messages=[{"role": "user", "content": "capital of France?"}])

See docs/testing.md. Importing this package imports neither litellm nor yaml.
"""

from promptops.testing.github import FakeGitHub, GitHubFault
from promptops.testing.judge import WordJudge
from promptops.testing.noise import NoisyResponder
from promptops.testing.rules import Fault, Responder, Rule
from promptops.testing.server import API_KEY, StubServer, count_tokens, embed, load_rules, load_settings

__all__ = ["API_KEY", "FakeGitHub", "Fault", "GitHubFault", "NoisyResponder", "Responder", "Rule", "StubServer",
           "WordJudge", "count_tokens", "embed", "load_rules", "load_settings"]
