#!/usr/bin/env bash
# Compile and link a few sources with the project's flags, without make —
# for working on one module while others are in progress.
#   test/dev-build.sh OUT source.c [source.c ...]
# Always adds the generated protobuf code and common/error.c, hash.c,
# duration.c. Links cmocka too. Output goes wherever OUT says.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
gen=${DEV_GEN:-/tmp/invsync-gen}
mkdir -p "$gen" "$(dirname "$out")"
[ "$gen/invsync.pb-c.c" -nt proto/invsync.proto ] ||
  protoc-c --proto_path=proto --c_out="$gen" proto/invsync.proto
PKGS="rdkafka libprotobuf-c libmicrohttpd sqlite3 jansson yaml-0.1 libcurl libcrypto cmocka"
srcs=("$@")
for base in common/error.c common/hash.c common/duration.c; do
  case " ${srcs[*]} " in *" $base "*) ;; *) srcs+=("$base") ;; esac
done
exec ${CC:-cc} -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -O1 -g ${SAN:-} \
  -I common -I erp-consumer -I mes-producer -I "$gen" $(pkg-config --cflags $PKGS) \
  "${srcs[@]}" "$gen/invsync.pb-c.c" $(pkg-config --libs $PKGS) -lpthread -lm -o "$out"
