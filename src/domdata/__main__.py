"""``python -m domdata``: the command line."""

from ._cli.fast import exit_now, main

main()
exit_now()
