# Sourced by demo.sh and test.sh: make .venv with domdata and the given extras.
# On a fresh Debian machine Python may lack venv; as root, install what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        return 1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The install is editable, so it follows the sources by itself: pip runs again
# only when pyproject.toml changed since the last install or an extra is wanted
# that is not installed (the stamp keeps the file's digest and the extras).
make_venv() {
    local extras=$1 stamp=.venv/.domdata-install digest current=no installed="" wanted
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
    fi
    digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(head -n1 "$stamp" 2>/dev/null)" = "$digest" ]; then
        current=yes
        installed=$(sed -n 2p "$stamp")
    fi
    wanted=$(printf '%s\n' ${installed//,/ } ${extras//,/ } | sort -u | paste -sd, -)
    if [ "$current" = yes ] && [ "$wanted" = "$installed" ] && .venv/bin/python -c 'import domdata' 2>/dev/null; then
        return 0
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${wanted:+[$wanted]}"
    printf '%s\n%s\n' "$digest" "$wanted" >"$stamp"
}
