#!/usr/bin/env bash
# What FHIR delivery needs beyond scripts/setup.sh, installed by the project's own files (docs/SPEC.md §12):
#   - the development FHIR server: HAPI FHIR JPA 8.8.0 resolved from Maven Central (~300 MB of jars, cached under
#     .cache/fhir-server) and its application class compiled (`twiwatch fhir-server resolve`);
#   - Ory Hydra v2.3.0, the real OAuth2 server the SMART Backend Services tests run, built from the Go module proxy
#     into .cache/bin/hydra (about 2 min on 2 cores, first run only). `go install …@v2.3.0` fails on the module's
#     replace directives, so it is built from the module's source with the replace dropped.
# Usage: bash scripts/setup_fhir.sh [all|hapi|hydra]   (default all). Idempotent; needs Java 17, Maven, Go, a C
# compiler (Hydra's SQLite driver uses cgo). The Python packages come from pyproject.toml (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
PY=${PYTHON_VENV:-.venv/bin/python}
# The cache the Python code uses (TWIWATCH_CACHE_DIR, else the XDG default): tests look for Hydra there.
CACHE=$("$PY" -c 'from stream.config import ToolSettings; print(ToolSettings().cache_dir)')

if [ "$what" = all ] || [ "$what" = hapi ]; then
  command -v mvn >/dev/null || { echo "Maven (mvn) is required to resolve HAPI FHIR from Maven Central" >&2; exit 1; }
  command -v java >/dev/null || { echo "Java 17+ is required to run the HAPI FHIR server" >&2; exit 1; }
  "$PY" -m stream.cli fhir-server resolve
fi

HYDRA_VERSION=v2.3.0
HYDRA_CLIENT_VERSION=v2.2.1
if [ "$what" = all ] || [ "$what" = hydra ]; then
  bin="$CACHE/bin"
  if [ ! -x "$bin/hydra" ] || [ ! -f "$bin/.hydra-$HYDRA_VERSION" ]; then
    command -v go >/dev/null || { echo "Go is required to build Ory Hydra (the SMART tests' OAuth2 server)" >&2; exit 1; }
    command -v gcc >/dev/null || command -v cc >/dev/null || {
      echo "a C compiler is required to build Ory Hydra with SQLite (cgo)" >&2; exit 1; }
    echo "== building Ory Hydra $HYDRA_VERSION into $bin (first run only, ~2 min)"
    mkdir -p "$bin"
    src=$(GOFLAGS="-mod=mod -buildvcs=false" go mod download -json "github.com/ory/hydra/v2@$HYDRA_VERSION" \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$src" ] || { echo "go mod download did not give Hydra's source directory" >&2; exit 1; }
    work=$(mktemp -d)
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    cp -r "$src/." "$work/"
    chmod -R u+w "$work"
    (
      cd "$work"
      go mod edit -dropreplace github.com/ory/hydra-client-go/v2
      GOFLAGS="-mod=mod -buildvcs=false" go get "github.com/ory/hydra-client-go/v2@$HYDRA_CLIENT_VERSION"
      CGO_ENABLED=1 GOFLAGS="-mod=mod -buildvcs=false" go build -tags sqlite,sqlite_omit_load_extension -o "$bin/hydra.partial" .
    )
    mv "$bin/hydra.partial" "$bin/hydra"
    touch "$bin/.hydra-$HYDRA_VERSION"
  fi
  "$bin/hydra" version 2>/dev/null | head -3 || true
fi
echo "== FHIR delivery setup done"
