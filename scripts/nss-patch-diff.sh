#!/bin/sh
# Regenerate a patch of nss-patches/ from two lib/ssl trees.
#
#   scripts/nss-patch-diff.sh A B HEADER > nss-patches/3.87/000N-....patch
#
# A and B each hold lib/ssl/ (pristine and edited: a Debian nss tree's nss/,
# or a Firefox/Thunderbird tree's security/nss/); HEADER is the patch's
# description (the From:/Subject: lines and the text above the first diff),
# e.g. `sed '/^diff /,$d' nss-patches/3.87/0001-*.patch`.  File names in the
# output carry the nss/ prefix, so the series applies with `patch -p1` from
# the directory holding nss/: the top of the dpkg-source tree
# (scripts/nss-prepare.sh), or security/ (scripts/corelease-prepare.sh).
set -eu
a=$1 b=$2 header=$3
cat "$header"
(cd "$b" && find lib -type f | LC_ALL=C sort) | while read -r f; do
	echo "diff -Nru a/nss/$f b/nss/$f"
	diff -Nu --label "a/nss/$f" --label "b/nss/$f" "$a/$f" "$b/$f" || true
done | awk '
	/^diff -Nru/ { pending = $0; next }
	/^--- / && pending != "" { print pending; pending = "" }
	{ print }'
