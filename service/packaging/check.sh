#!/usr/bin/env bash
# Checks the packages of `make release-test` in DIST (default dist/): the
# .deb with lintian, its contents, its unit (systemd-analyze verify and
# security), its binary; the .rpm's files and scripts; then installs,
# upgrades, removes and purges the .deb in a throwaway Debian root made by
# debootstrap (cached in ~/.cache/courier-release), running its maintainer
# scripts there. Prints one line per check and "N passed, N failed".
set -uo pipefail
dist=${1:-dist}
# Highest `systemd-analyze security` exposure the packaged unit may have;
# service/unit_test.go explains the score of the unit run as root (1.6).
max_exposure=1.8
cache=${COURIER_RELEASE_CACHE:-$HOME/.cache/courier-release}
rootfs_tar=$cache/bookworm-minbase-systemd.tar

passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/     /'; failed=$((failed + 1)); }
check() { # check NAME COMMAND...: passes when COMMAND exits 0
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

deb=$(ls "$dist"/*_amd64.deb 2>/dev/null | head -1)
rpm=$(ls "$dist"/*amd64.rpm "$dist"/*x86_64.rpm 2>/dev/null | head -1)
[ -n "$deb" ] || { bad "an amd64 .deb in $dist (run make release-test first)"; echo "$passed passed, $failed failed"; exit 1; }
[ -n "$rpm" ] || bad "an amd64 .rpm in $dist"

# lintian exits non-zero on errors; warnings are overridden with reasons in
# service/packaging/lintian-overrides, and shown here.
check "lintian: no errors" lintian --fail-on error --display-info "$deb"
lintian --fail-on none "$deb" | grep -E '^(E|W):' | sed 's/^/     lintian /'

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/courier ./lib/systemd/system/courier.service ./usr/share/doc/courier/copyright; do
	check "dpkg-deb -c lists $f" grep -q " $f\$" <<<"$contents"
done
control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
for f in postinst prerm postrm; do
	check "the .deb has a $f script" grep -qx "./$f" <<<"$control"
done

x=$work/x
dpkg-deb -x "$deb" "$x"
check "the packaged binary runs courier version" sh -c "'$x/usr/bin/courier' version | grep -q '^courier [0-9]'"
unit=$x/lib/systemd/system/courier.service
check "the unit runs as User=courier" grep -qx 'User=courier' "$unit"
check "the unit keeps StateDirectory=courier" grep -qx 'StateDirectory=courier' "$unit"
# verify checks that ExecStart exists: point it at the extracted binary.
sed "s|^ExecStart=/usr/bin/courier |ExecStart=$x/usr/bin/courier |" "$unit" >"$work/courier.service"
out=$(SYSTEMD_PAGER= systemd-analyze verify "$work/courier.service" 2>&1)
if [ $? -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify"; else bad "systemd-analyze verify" "$out"; fi
out=$(SYSTEMD_PAGER= SYSTEMD_COLORS=0 systemd-analyze security --offline=yes --no-pager "$work/courier.service" 2>&1)
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
if [ -n "$score" ] && awk -v s="$score" -v m="$max_exposure" 'BEGIN{exit !(s <= m)}'; then
	ok "systemd-analyze security: exposure $score <= $max_exposure"
else
	bad "systemd-analyze security: exposure '$score' > $max_exposure" "$out"
fi

if [ -n "$rpm" ]; then
	files=$(rpm -qpl "$rpm" 2>&1)
	for f in /usr/bin/courier /usr/lib/systemd/system/courier.service; do
		check "rpm -qpl lists $f" grep -qx "$f" <<<"$files"
	done
	scripts=$(rpm -qp --scripts "$rpm" 2>&1)
	for s in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet' 'useradd --system' 'systemctl enable courier.service'; do
		check "rpm -qp --scripts shows $s" grep -q "$s" <<<"$scripts"
	done
fi

# A throwaway Debian 12 root: debootstrap once, then unpacked afresh.
if [ ! -s "$rootfs_tar" ]; then
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/debootstrap.XXXXXX")
	if debootstrap --variant=minbase --include=systemd bookworm "$tmp/root" http://deb.debian.org/debian >"$tmp/log" 2>&1; then
		tar -C "$tmp/root" -cf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
	else
		tail -5 "$tmp/log"
	fi
	rm -rf "$tmp"
fi
if [ ! -s "$rootfs_tar" ]; then
	bad "a throwaway Debian root (debootstrap bookworm failed; see above)"
else
	r=$work/root
	mkdir "$r" && tar -C "$r" -xf "$rootfs_tar"
	inroot() { chroot "$r" "$@"; }
	check "dpkg --root -i (fresh install)" dpkg --root="$r" -i "$deb"
	check "the courier user exists" inroot getent passwd courier
	check "/var/lib/courier is courier's, 0700" sh -c "[ \"\$(chroot '$r' stat -c '%U:%G %a' /var/lib/courier)\" = 'courier:courier 700' ]"
	check "config.yaml written by courier init, owned by courier" sh -c "[ \"\$(chroot '$r' stat -c '%U %a' /var/lib/courier/config.yaml)\" = 'courier 600' ]"
	check "the unit is enabled" test -L "$r/etc/systemd/system/multi-user.target.wants/courier.service"
	echo "# kept across upgrades" >>"$r/var/lib/courier/config.yaml"
	check "dpkg --root -i again (upgrade)" dpkg --root="$r" -i "$deb"
	check "the upgrade kept config.yaml" grep -q '^# kept across upgrades' "$r/var/lib/courier/config.yaml"
	check "dpkg --root -r (remove)" dpkg --root="$r" -r courier
	check "remove disabled the unit" test ! -e "$r/etc/systemd/system/multi-user.target.wants/courier.service"
	check "remove kept /var/lib/courier" test -f "$r/var/lib/courier/config.yaml"
	check "dpkg --root -P (purge)" dpkg --root="$r" -P courier
	check "purge removed /var/lib/courier" test ! -e "$r/var/lib/courier"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
