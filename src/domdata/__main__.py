"""``python -m domdata``: the command line."""

from ._cli.fast import main

main()
