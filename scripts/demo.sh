#!/usr/bin/env bash
# The main job on the embedded default (SQLite in the user's state directory,
# domains managed by domdata): a toolstack keeping a domain's xl config
# across a config-update and a reboot, as xl does with the `xl` userid.
source "$(dirname "$0")/_env.sh"
make_venv ""
PATH="$PWD/.venv/bin:$PATH" exec bash examples/xl-session.sh
