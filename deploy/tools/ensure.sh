#!/usr/bin/env bash
# Builds and fetches what checking the deployment manifests needs, into .orrery/deploy-tools (git-ignored):
#   bin/kustomize, bin/kubevalidate       built from deploy/tools/go.mod (versions pinned by go.sum) through
#                                          the Go module proxy; no binary is downloaded from a release page
#   crds/keda.sh_scaledobjects.yaml       KEDA's ScaledObject CRD, from the github.com/kedacore/keda/v2 module
#   schemas/compose-spec.json             the Compose specification's JSON schema, from compose-go's module
#   schemas/asyncapi-3.0.0.json           the AsyncAPI 3.0.0 JSON schema, from the npm package @asyncapi/specs
# Every download is checked against a hash pinned here. Go >= 1.25 is used when installed; otherwise (linux/amd64)
# the Go toolchain itself comes from the module proxy, where `go` publishes it as the golang.org/toolchain module.
# Idempotent: a stamp records the inputs of the last build, so a second run returns at once.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${ORRERY_DEPLOY_TOOLS:-$ROOT/.orrery/deploy-tools}"
PROXY="https://proxy.golang.org"

GO_TOOLCHAIN="v0.0.1-go1.26.8.linux-amd64"
GO_TOOLCHAIN_SHA256="30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7"
KEDA_MODULE="github.com/kedacore/keda/v2"
KEDA_VERSION="v2.16.1"
KEDA_SUM="h1:LfYsxfSX8DjetLW8q9qnriImH936POrQJvE+caRoScI="
COMPOSE_MODULE="github.com/compose-spec/compose-go/v2"
COMPOSE_VERSION="v2.16.2"
COMPOSE_SUM="h1:pTp1DqQwJzFd85GzlWsSszKA1ABrV/ySqsClujIcWA8="
ASYNCAPI_SPECS_URL="https://registry.npmjs.org/@asyncapi/specs/-/specs-6.11.1.tgz"
ASYNCAPI_SPECS_SHA512="A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="

log() { printf '[deploy-tools] %s\n' "$*" >&2; }
die() { printf '[deploy-tools] error: %s\n' "$*" >&2; exit 1; }

PY="$(command -v python3.11 || command -v python3)" || die "python3 is needed"

# fetch URL DEST ALGORITHM DIGEST: download, and keep the file only if its digest (hex, or base64 as npm
# publishes sha512) matches.
fetch() {
  "$PY" - "$@" <<'PYTHON'
import base64, hashlib, os, sys, urllib.request
url, dest, algorithm, expected = sys.argv[1:5]
with urllib.request.urlopen(url, timeout=300) as response:
    data = response.read()
digest = hashlib.new(algorithm, data)
if expected not in (digest.hexdigest(), base64.b64encode(digest.digest()).decode()):
    sys.exit(f"{url}: {algorithm} does not match the pinned value")
with open(dest + ".part", "wb") as handle:
    handle.write(data)
os.replace(dest + ".part", dest)
PYTHON
}

mkdir -p "$OUT"
# One builder at a time: test runs started together wait here instead of building twice.
exec 9>"$OUT/.lock"
flock 9

go_usable() { "$1" version 2>/dev/null | grep -Eq 'go1\.(2[5-9]|[3-9][0-9])(\.|[^0-9])'; }
GO="$(command -v go || true)"
if [ -z "$GO" ] || ! go_usable "$GO"; then
  GO="$OUT/go/bin/go"
  if ! go_usable "$GO"; then
    [ "$(uname -sm)" = "Linux x86_64" ] || die "install Go >= 1.25 (https://go.dev/dl) to build kustomize"
    log "fetching the Go toolchain ($GO_TOOLCHAIN) from the module proxy"
    rm -rf "$OUT/go" "$OUT/go.tmp" && mkdir -p "$OUT/go.tmp"
    fetch "$PROXY/golang.org/toolchain/@v/$GO_TOOLCHAIN.zip" "$OUT/go.tmp/toolchain.zip" sha256 "$GO_TOOLCHAIN_SHA256"
    "$PY" -m zipfile -e "$OUT/go.tmp/toolchain.zip" "$OUT/go.tmp"
    mv "$OUT/go.tmp/golang.org/toolchain@$GO_TOOLCHAIN" "$OUT/go"
    rm -rf "$OUT/go.tmp"
    # Module zips keep no file modes.
    chmod +x "$OUT"/go/bin/* "$OUT"/go/pkg/tool/*/*
  fi
fi

stamp="$( (cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/kubevalidate/*.go "${BASH_SOURCE[0]}"; "$GO" version) | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ]; then
  exit 0
fi

log "building kustomize and kubevalidate with $("$GO" version | cut -d' ' -f3) (a few minutes the first time)"
(
  cd "$HERE"
  export GOFLAGS=-mod=readonly GOTOOLCHAIN=local
  "$GO" build -trimpath -o "$OUT/bin/kustomize" sigs.k8s.io/kustomize/kustomize/v5
  "$GO" build -trimpath -o "$OUT/bin/kubevalidate" ./kubevalidate
)

# A module's source as the proxy serves it; the pinned h1: hash is checked here, so the checksum database
# (not always reachable) is not needed.
module_dir() { # module version sum
  local info dir sum
  info="$(cd "$OUT" && GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local GO111MODULE=on "$GO" mod download -json "$1@$2")"
  dir="$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  sum="$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')"
  [ "$sum" = "$3" ] || die "$1@$2 has hash $sum, expected $3"
  printf '%s' "$dir"
}

log "fetching the KEDA CRDs and the Compose schema through the Go module proxy"
mkdir -p "$OUT/crds" "$OUT/schemas"
keda="$(module_dir "$KEDA_MODULE" "$KEDA_VERSION" "$KEDA_SUM")"
install -m 0644 "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" "$OUT/crds/keda.sh_scaledobjects.yaml"
compose="$(module_dir "$COMPOSE_MODULE" "$COMPOSE_VERSION" "$COMPOSE_SUM")"
install -m 0644 "$compose/schema/compose-spec.json" "$OUT/schemas/compose-spec.json"

log "fetching the AsyncAPI schema from the npm registry"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fetch "$ASYNCAPI_SPECS_URL" "$tmp/specs.tgz" sha512 "$ASYNCAPI_SPECS_SHA512"
tar -xzf "$tmp/specs.tgz" -C "$tmp" 'package/schemas/3.0.0-without-$id.json'
install -m 0644 "$tmp/package/schemas/3.0.0-without-\$id.json" "$OUT/schemas/asyncapi-3.0.0.json"

printf '%s\n' "$stamp" >"$OUT/stamp"
log "ready in $OUT"
