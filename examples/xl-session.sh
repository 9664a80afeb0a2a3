#!/usr/bin/env bash
# A toolstack's day with one domain, through the domdata command line, on the
# embedded default store. It does what xl does with its `xl` userid: keep the
# domain's config beside the domain, update it in place, carry it across a
# reboot (a new incarnation), and lose it with the domain.
set -euo pipefail
say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

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
domid=$(domdata domain create "$name")
echo "created $name as domid $domid"
run domdata store "$name" xl "$cfg"
printf 'boot-count=1\n' | domdata store "$name" org.example.monitor
run domdata list "$domid"

say "xl config-update: read-modify-write under the domain's lock"
# Every domdata call the locked command makes on this domain uses the held lock.
update="domdata retrieve $domid xl | sed 's/^memory = .*/memory = 1024/' | domdata store $domid xl -"
printf '$ domdata lock %s -- sh -c "%s"\n' "$name" "$update"
domdata lock "$name" -- sh -c "$update"
run domdata show "$name" xl

say "reboot: a new incarnation (same uuid); only what the toolstack carries over survives"
uuid=$(domdata domain list --json | python3 -c "import json,sys; print(next(d['uuid'] for d in json.load(sys.stdin) if d['name'] == '$name'))")
domdata retrieve "$domid" xl >"$cfg"
run domdata domain destroy "$domid"
newdomid=$(domdata domain create "$name" --uuid "$uuid")
domdata store "$newdomid" xl "$cfg"
echo "$name runs again as domid $newdomid (the lowest free domid), uuid $uuid"
run domdata list "$newdomid"
echo "(org.example.monitor belonged to the old incarnation and went with it)"
printf '$ domdata retrieve %s org.example.monitor   # absent: no output, exit 0\n' "$newdomid"
domdata retrieve "$newdomid" org.example.monitor
echo "exit status $?"

say "bad input is refused with a named error and changes nothing"
printf '$ domdata store %s ../escape < %s\n' "$name" "$cfg"
status=0; domdata store "$name" ../escape <"$cfg" || status=$?
echo "exit status $status"

say "xl destroy: the domain goes, and its data with it"
run domdata domain destroy "$name"
status=0; domdata retrieve "$newdomid" xl 2>&1 || status=$?
echo "exit status $status (DomainNotFound)"
run domdata reap --dry-run
