#!/usr/bin/env bash
# The 13-stage demo with its pipeline key on a SoftHSM2 token (docs/keys.md).
#   usage: examples/softhsm-demo.sh [DEMO_DIR]      (needs softhsm2: apt-get install softhsm2)
# The token lives in DEMO_DIR-token/ (a throwaway SOFTHSM2_CONF); the key is created ON the token
# and never leaves it. The PIN is passed in the environment, never on a command line.
set -euo pipefail
DEMO_DIR=${1:-demo-project-hsm}
MLSPEC=${MLSPEC:-mlspec}
MODULE=${MLSPEC_PKCS11_MODULE:-}
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -z "$MODULE" ] && [ -f "$m" ] && MODULE=$m
done
command -v softhsm2-util >/dev/null && [ -n "$MODULE" ] || { echo "softhsm2 is not installed" >&2; exit 2; }
TOKEN_DIR="$(pwd)/${DEMO_DIR%/}-token"
rm -rf "$TOKEN_DIR" && mkdir -p "$TOKEN_DIR/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$TOKEN_DIR" \
  > "$TOKEN_DIR/softhsm2.conf"
export SOFTHSM2_CONF="$TOKEN_DIR/softhsm2.conf"
export MLSPEC_PKCS11_PIN=${MLSPEC_PKCS11_PIN:-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}
softhsm2-util --init-token --free --label mlspec-demo --so-pin "$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" \
  --pin "$MLSPEC_PKCS11_PIN" >/dev/null
URI="pkcs11:token=mlspec-demo;object=pipeline?module-path=$MODULE"
$MLSPEC keys generate pipeline --type ecdsa-p256 --pkcs11 "$URI" --dir "$TOKEN_DIR"
$MLSPEC demo "$DEMO_DIR" --pipeline-key "$URI"
