#!/bin/sh
# courier package: after removal. /var/lib/courier (config, queue, logs)
# is kept unless the package is purged (deb only: rpm has no purge); the
# courier user is kept, as Debian does for system users, so that files it
# owns elsewhere do not pass to a later user with the same id.
set -e

case "$1" in
purge)
	rm -rf /var/lib/courier
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
