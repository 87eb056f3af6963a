#!/bin/sh
# courier package: before removal (deb: remove; rpm: %preun, $1 = 0 on
# removal, 1 on upgrade). Stops and disables the unit; an upgrade keeps it
# running (postinstall restarts it).
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop courier.service >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null; then
	systemctl disable courier.service >/dev/null 2>&1 || true
fi
exit 0
