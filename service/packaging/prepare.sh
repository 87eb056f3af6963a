#!/bin/sh
# Writes what the release archives and packages carry besides the binary
# into .release/ (a build output): the systemd unit, rendered by
# `courier service unit` from the template that `courier service install`
# uses, and the licence notices of every module linked into courier.
# and the Debian changelog entry of version $1. GoReleaser runs it as a
# before hook, from the repository's top folder.
set -eu
version=${1:?usage: prepare.sh VERSION}
out=.release
rm -rf "$out"
mkdir -p "$out"

go run -trimpath . --root /var/lib/courier service unit \
	--binary /usr/bin/courier --user courier >"$out/courier.service"

notices="$out/THIRD_PARTY_NOTICES"
{
	echo "courier"
	echo
	echo "This repository declares no licence of its own for courier yet; the"
	echo "modules below are linked into the courier binary under their own"
	echo "licences, reproduced in full."
	go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' . |
		sort -u | while read -r path version dir; do
		echo
		echo "------------------------------------------------------------------------"
		echo "$path $version"
		echo
		found=
		for f in "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/COPYING* "$dir"/NOTICE*; do
			[ -f "$f" ] || continue
			cat "$f"
			found=1
		done
		[ -n "$found" ] || echo "(no licence file in the module)"
	done
} >"$notices"

# Debian wants a changelog in every package; the release notes are the git
# log, so the entry names the commit. Dated by the commit: reproducible.
{
	echo "courier ($version) unstable; urgency=medium"
	echo
	echo "  * Release $version, built from commit $(git rev-parse HEAD)."
	echo
	echo " -- courier maintainers <courier@courier.invalid>  $(git log -1 --format=%aD)"
} | gzip -9n >"$out/changelog.gz"
