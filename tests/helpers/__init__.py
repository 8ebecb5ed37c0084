"""What the tests share: run the CLI (cli), real git repositories (repo), the leak check (leaks), the lint
fixtures (lint), the golden checks (golden), and the projects several test folders build (geo, release,
actions). Importable from every test folder as ``helpers.*`` (pyproject: ``pythonpath = ["tests"]``); a test
module never imports another test module."""
