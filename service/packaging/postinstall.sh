#!/bin/sh
# courier package: after unpacking (deb: configure; rpm: %post, $1 = 1 on
# install, 2 on upgrade). Creates the courier user and its state folder,
# writes a default config only when there is none, and enables the unit
# without starting it: `courier enroll` starts it once enrolled.
set -e

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

root=/var/lib/courier
if ! getent group courier >/dev/null; then
	groupadd --system courier
fi
if ! getent passwd courier >/dev/null; then
	useradd --system --gid courier --home-dir "$root" --no-create-home \
		--shell /usr/sbin/nologin --comment "courier agent" courier
fi

if [ ! -d "$root" ]; then
	install -d -m 0700 -o courier -g courier "$root"
elif [ "$(stat -c %U "$root")" != courier ]; then
	# A root folder from before the package (run as root): hand it over,
	# as the unit's StateDirectory= would at the next start.
	chown -R courier:courier "$root"
	chmod 0700 "$root"
fi

if [ ! -e "$root/config.yaml" ]; then
	runuser -u courier -- /usr/bin/courier --root "$root" --log-format console init >/dev/null
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
if command -v systemctl >/dev/null; then
	systemctl enable courier.service >/dev/null 2>&1 || true
fi
# An upgrade runs the new binary if the service was running.
if [ -d /run/systemd/system ]; then
	systemctl try-restart courier.service >/dev/null || true
fi
exit 0
