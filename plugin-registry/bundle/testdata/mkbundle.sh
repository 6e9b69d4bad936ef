#!/bin/sh
# mkbundle.sh: build (and optionally sign) a Keel plugin bundle with standard tools only:
# POSIX sh, GNU tar, jq, openssl and sha256sum. It is the reference for the by-hand recipe
# in plugin-registry/README.md, and bundle_test runs it to prove that recipe works.
#
# usage: mkbundle.sh PLUGIN_DIR OUT.keel [PRIVATE_KEY.pem]
# PLUGIN_DIR holds manifest.json, plugin.wasm and optionally migrations/NNNN_name.sql.
set -eu
dir=$1 out=$2 key=${3:-}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
case $key in /* | "") ;; *) key=$(pwd)/$key ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$dir/manifest.json" "$dir/plugin.wasm" "$work/"
files="manifest.json"
if [ -d "$dir/migrations" ]; then
	mkdir "$work/migrations"
	for f in $(cd "$dir" && ls migrations/*.sql 2>/dev/null | LC_ALL=C sort); do
		cp "$dir/$f" "$work/$f"
		files="$files $f"
	done
fi
files="$files plugin.wasm" # byte order: manifest.json < migrations/... < plugin.wasm
cd "$work"

# digests.json: canonical compact JSON, one final newline (jq -c prints exactly that).
for f in $files; do
	printf '%s %s %s\n' "$f" "$(wc -c <"$f" | tr -d ' ')" "$(sha256sum "$f" | cut -d' ' -f1)"
done | jq -R -s -c \
	--arg name "$(jq -r .name manifest.json)" --arg version "$(jq -r .version manifest.json)" \
	'{format: 1, name: $name, version: $version,
	  files: [split("\n")[] | select(. != "") | split(" ") | {path: .[0], size: (.[1] | tonumber), sha256: .[2]}]}' \
	>digests.json

sig=""
if [ -n "$key" ]; then
	# Separate steps, not pipes: sh has no pipefail, and a failed step must stop here.
	openssl pkey -in "$key" -pubout -outform DER -out "$work/pub.der"
	openssl pkeyutl -sign -inkey "$key" -rawin -in digests.json -out "$work/sig.bin"
	[ "$(wc -c <"$work/pub.der")" -eq 44 ] || { echo "mkbundle: $key is not an ed25519 key" >&2; exit 1; }
	[ "$(wc -c <"$work/sig.bin")" -eq 64 ] || { echo "mkbundle: signing failed" >&2; exit 1; }
	keyid=$(tail -c 32 "$work/pub.der" | sha256sum | cut -c1-16)
	signature=$(openssl base64 -A -in "$work/sig.bin")
	jq -n -c --arg k "$keyid" --arg s "$signature" '{key_id: $k, algorithm: "ed25519", signature: $s}' >signature.json
	rm "$work/pub.der" "$work/sig.bin"
	sig=signature.json
fi

# digests.json first, signature.json second, then the content. The fixed owner, mode and
# time are optional (readers ignore them) but make the file reproducible.
tar --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 --mtime=@0 \
	-cf "$out" digests.json $sig $files
