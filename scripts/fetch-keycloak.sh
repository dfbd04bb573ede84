#!/usr/bin/env bash
# Fetch the Keycloak server distribution with Maven (Maven Central) and unpack it into a cache
# folder outside git; the tests (test/helpers/keycloak-setup.ts) start it from there.
# Prints the unpacked folder. KEYCLOAK_VERSION picks another 26.x; KEYCLOAK_CACHE another folder.
set -euo pipefail
version="${KEYCLOAK_VERSION:-26.7.3}"
cache="${KEYCLOAK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-auth-sidecar}"
home="$cache/keycloak-$version"
if [ -x "$home/bin/kc.sh" ]; then echo "$home"; exit 0; fi
command -v mvn >/dev/null || { echo "mvn is not installed (apt-get install maven)" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mvn -q -B dependency:copy "-Dartifact=org.keycloak:keycloak-quarkus-dist:$version:tar.gz" "-DoutputDirectory=$tmp" >&2
tar -xzf "$tmp/keycloak-quarkus-dist-$version.tar.gz" -C "$tmp"
# The archive unpacks to keycloak-<version>/; moved into place whole, so a half-unpacked folder is never used.
mv "$tmp/keycloak-$version" "$home"
echo "$home"
