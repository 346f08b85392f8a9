#!/bin/sh
# Installs the Debian packages the test suite needs, when run as root;
# otherwise names the command to run.
set -eu
need=""
# skopeo: the interoperability tests read and write archives and layouts
# with it. zstd: the layer tests check that the zstd tool decodes layers.
# umoci: an independent reader of imported images. busybox-static: the
# run and build tests make their images from it. uidmap: newuidmap and
# newgidmap, for the subordinate-id path of imgtool run.
for pkg in skopeo zstd umoci busybox-static uidmap; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
else
	echo "the tests need these Debian packages; install them with:" >&2
	echo "  sudo apt-get install -y$need" >&2
	exit 1
fi
