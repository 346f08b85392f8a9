#!/bin/sh
# Installs the Debian packages the test suite needs, when run as root;
# otherwise names the command to run.
set -eu
need=""
# skopeo: the interoperability tests read and write archives and layouts
# with it. zstd: the layer tests check that the zstd tool decodes layers.
# umoci: an independent reader of imported images. busybox-static: the
# run and build tests make their images from it. uidmap: newuidmap and
# newgidmap, for the subordinate-id path of imgtool run. xz-utils: the
# ADD tests make xz archives with an encoder other than the decoder's.
# git: git build contexts and ADD of repositories run it, and the tests
# serve repositories with git daemon and git http-backend.
# openssh-client: ssh-agent, ssh-add and ssh-keygen for the --ssh tests.
# podman and containerd (with ctr): clients of the registry in the
# interop tests.
for pkg in skopeo zstd umoci busybox-static uidmap xz-utils git openssh-client podman containerd; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
# Ceph's mon, OSD and RADOS Gateway (and curl): the S3 tests run the
# registry over a throw-away RGW (scripts/s3-up.sh). Without recommends:
# they would pull in the whole of Ceph.
ceph=""
for pkg in ceph-mon ceph-osd radosgw ceph-common curl; do
	dpkg -s "$pkg" >/dev/null 2>&1 || ceph="$ceph $pkg"
done
[ -z "$need$ceph" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	[ -z "$need" ] || apt-get install -y -qq $need >/dev/null
	[ -z "$ceph" ] || apt-get install -y -qq --no-install-recommends $ceph >/dev/null
else
	echo "the tests need these Debian packages; install them with:" >&2
	[ -z "$need" ] || echo "  sudo apt-get install -y$need" >&2
	[ -z "$ceph" ] || echo "  sudo apt-get install -y --no-install-recommends$ceph" >&2
	exit 1
fi
