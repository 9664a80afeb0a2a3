#!/usr/bin/env bash
# The whole test suite: real SQLite, libxl-format files, PostgreSQL and libvirt.
# As root it installs the Debian packages the tests need (PostgreSQL server,
# libvirt's headers for libvirt-python, the libvirt daemon, libxenlight and
# the Xen headers the xen tests' shim is built with). Extra arguments go to
# pytest.
source "$(dirname "$0")/_env.sh"
apt_install gcc python3-dev pkg-config libvirt-dev libvirt-daemon postgresql strace libxen-dev
make_venv "libvirt,postgresql,test"
exec .venv/bin/python -m pytest "$@"
