"""``python -m agent.cli``: the same as the ``usage-agent`` console script."""

from agent.cli import main

main()
