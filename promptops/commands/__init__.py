"""The commands of the command line, one module each; ``promptops.cli`` puts them in one click group.

A command parses its options, calls its stage and writes what the stage returns through
``commands.output`` (one way to pick a renderer for --format, one way to write --output). It raises a
``promptops.errors.PromptopsError`` when it cannot go on; ``promptops.cli`` turns that into the message
and the exit code. Heavy modules (the stages, litellm, GitPython) are imported inside the command, so
that starting one command imports none of the others.
"""
