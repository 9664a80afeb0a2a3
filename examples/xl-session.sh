#!/usr/bin/env bash
# A toolstack's day with one domain, through the domdata command line, on the
# embedded default store. It does what xl does with its `xl` userid: keep the
# domain's config beside the domain, update it in place, carry it across a
# reboot (a new incarnation), and lose it with the domain.
set -euo pipefail
say() { printf '\n== %s\n' "$*"; }
# Every command is shown before it runs, as a newcomer would type it.
show() { printf '$ %s\n' "$*"; }
run() { show "$@"; "$@"; }
# A command expected to fail: its error and exit status are shown, the session goes on.
fails() { show "$@"; local status=0; "$@" 2>&1 || status=$?; echo "(exit status $status)"; }

name="demo-web-$$"
cfg=$(mktemp)
trap 'rm -f "$cfg"' EXIT
cat >"$cfg" <<CFG
name = "$name"
memory = 512
vcpus = 1
disk = [ "/var/lib/images/$name.qcow2,qcow2,xvda,rw" ]
CFG

say "xl create: the toolstack creates the domain and keeps its config as userid 'xl'"
show domdata domain create "$name"
domid=$(domdata domain create "$name")
echo "$domid"
run domdata store "$name" xl "$cfg"
show "printf 'boot-count=1\n' | domdata store $name org.example.monitor"
printf 'boot-count=1\n' | domdata store "$name" org.example.monitor
run domdata list "$domid"

say "xl config-update: read-modify-write under the domain's lock"
# Every domdata call the locked command makes on this domain uses the held lock.
update="domdata retrieve $domid xl | sed 's/^memory = .*/memory = 1024/' | domdata store $domid xl -"
printf '$ domdata lock %s -- sh -c "%s"\n' "$name" "$update"
domdata lock "$name" -- sh -c "$update"
run domdata show "$name" xl

say "reboot: a new incarnation (same uuid); only what the toolstack carries over survives"
pick_uuid="import json,sys; print(next(d['uuid'] for d in json.load(sys.stdin) if d['name'] == '$name'))"
show "uuid=\$(domdata domain list --json | python3 -c \"$pick_uuid\")"
uuid=$(domdata domain list --json | python3 -c "$pick_uuid")
show domdata retrieve "$domid" xl ">$cfg"
domdata retrieve "$domid" xl >"$cfg"
run domdata domain destroy "$domid"
show domdata domain create "$name" --uuid "$uuid"
newdomid=$(domdata domain create "$name" --uuid "$uuid")
echo "$newdomid"
run domdata store "$newdomid" xl "$cfg"
echo "($name runs again as domid $newdomid, the lowest free domid, with the same uuid)"
run domdata list "$newdomid"
echo "(org.example.monitor belonged to the old incarnation and went with it)"
show domdata retrieve "$newdomid" org.example.monitor "  # absent: no output, exit 0"
domdata retrieve "$newdomid" org.example.monitor
echo "(exit status $?)"

say "bad input is refused with a named error and changes nothing"
show domdata store "$name" ../escape "<$cfg"
status=0; domdata store "$name" ../escape <"$cfg" 2>&1 || status=$?
echo "(exit status $status: InvalidUserid)"

say "xl destroy: the domain goes, and its data with it"
run domdata domain destroy "$name"
echo "(the domain is gone: a call on it now fails with DomainNotFound, exit status 3)"
fails domdata retrieve "$newdomid" xl
run domdata reap --dry-run
