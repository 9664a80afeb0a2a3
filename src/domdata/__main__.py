"""``python -m domdata``: the command line."""

from .cli import main

main()
