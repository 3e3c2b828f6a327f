#!/usr/bin/env bash
# Set up a machine for twiwatch. Two modes, one venv (.venv) shared by both:
#   scripts/setup.sh demo   what ./scripts/demo.sh runs: the package with the `cpu` extra (ONNX Runtime for the shipped
#                           encoder, models/triage-s50); Java and Maven for the broker, whose jars are fetched from
#                           Maven Central while the venv installs
#   scripts/setup.sh test   (the default) everything the tests need: the `test,train,cpu,eval` extras (torch included,
#                           ruff and import-linter in `test`), and helm built with `go install` for the chart's tests
# Idempotent and incremental: each extra (and the base dependencies) has a stamp keyed by its requirement list in
# pyproject.toml, so a run installs only what changed or is missing (a test set-up after a demo set-up adds the test
# extras to the same venv). Installs with uv (from PyPI, into the venv) and falls back to pip; SETUP_INSTALLER=pip
# forces pip.
set -euo pipefail
cd "$(dirname "$0")/.."
# A checkout keeps its broker, worker state and caches in .cache (installed, the defaults are the XDG folders).
export TWIWATCH_CACHE_DIR=${TWIWATCH_CACHE_DIR:-$PWD/.cache} TWIWATCH_DATA_DIR=${TWIWATCH_DATA_DIR:-$PWD/.cache/worker}
export TWIWATCH_ENCODER_CACHE_DIR=${TWIWATCH_ENCODER_CACHE_DIR:-$PWD/.cache/tensorrt}
MODE=${1:-test}
case "$MODE" in
  demo) EXTRAS=(cpu) ;;
  test) EXTRAS=(test train cpu eval) ;;
  *) echo "usage: scripts/setup.sh [demo|test]  (default: test)" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
  echo "Python 3.11+ with the venv module is required (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2; exit 1; }
# The tools a mode needs, checked before anything slow starts.
command -v java >/dev/null || { echo "Java 17+ is required to run the Kafka broker" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven (mvn) is required to resolve Apache Kafka from Maven Central" >&2; exit 1; }
HELM_VERSION=v3.19.0
need_helm=0
if [ "$MODE" = test ] && { [ ! -x .cache/bin/helm ] || [ ! -f ".cache/bin/.helm-$HELM_VERSION" ]; }; then
  need_helm=1
  command -v go >/dev/null || {
    echo "Go 1.24+ is required to build helm for the chart's tests (go install helm.sh/helm/v3/cmd/helm)" >&2; exit 1; }
fi

# One stamp per requirement list: .venv/.twiwatch-<name>-<hash of the list>; `base` = the build system, [project]
# (dependencies, scripts) and the package layout.
stamps=$("$PY" - "${EXTRAS[@]}" <<'EOF'
import hashlib, json, sys, tomllib
with open("pyproject.toml", "rb") as f:
    doc = tomllib.load(f)
project = doc["project"]
base = {k: v for k, v in project.items() if k != "optional-dependencies"}  # deps, scripts, version, ...
lists = {"base": [doc["build-system"], base, doc.get("tool", {}).get("setuptools", {})]}
lists.update({name: project["optional-dependencies"][name] for name in sys.argv[1:]})
for name, reqs in lists.items():
    print(f".venv/.twiwatch-{name}-{hashlib.sha256(json.dumps(reqs, sort_keys=True).encode()).hexdigest()[:16]}")
EOF
)
missing=()
for s in $stamps; do [ -f "$s" ] || missing+=("$s"); done

mvn_pid=""
trap '[ -z "$mvn_pid" ] || kill "$mvn_pid" 2>/dev/null || true' EXIT
if [ ${#missing[@]} -gt 0 ]; then
  start=$SECONDS
  # A venv that no longer runs (moved, or its Python removed) is rebuilt; a working one is only added to.
  if [ -d .venv ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "== .venv does not run a Python 3.11+: rebuilding it"
    rm -rf .venv
  fi
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # Fill Maven's local repository with the broker's jars while the venv installs (`twiwatch kafka up` then copies
  # them without waiting on the network). A failure here is not fatal: `kafka up` resolves again and says why.
  mvn -q -B -f stream/devtools/kafka_pom.xml dependency:resolve -DincludeScope=runtime \
    ${TWIWATCH_KAFKA_VERSION:+"-Dkafka.version=$TWIWATCH_KAFKA_VERSION"} > .venv/maven-prefetch.log 2>&1 &
  mvn_pid=$!
  spec=".[$(IFS=,; echo "${EXTRAS[*]}")]"
  echo "== installing twiwatch $spec into .venv (${#missing[@]} of $(echo $stamps | wc -w) requirement lists new or changed)"
  UV=""
  if [ "${SETUP_INSTALLER:-uv}" = uv ]; then
    if [ -x .venv/bin/uv ]; then UV=.venv/bin/uv
    elif .venv/bin/python -m pip install -q uv; then UV=.venv/bin/uv
    else echo "== could not install uv from PyPI: installing with pip instead" >&2
    fi
  fi
  if [ -n "$UV" ] && "$UV" pip install -q --python .venv/bin/python -e "$spec"; then
    :
  else
    [ -z "$UV" ] || echo "== uv failed: installing with pip instead" >&2
    .venv/bin/python -m pip install -q -U pip wheel
    .venv/bin/python -m pip install -q -e "$spec"
  fi
  for s in $stamps; do touch "$s"; done
  echo "== venv ready ($((SECONDS - start)) s)"
fi

if [ "$need_helm" = 1 ]; then
  echo "== building helm $HELM_VERSION into .cache/bin (first run only)"
  GOBIN="$PWD/.cache/bin" GOFLAGS=-modcacherw go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch ".cache/bin/.helm-$HELM_VERSION"
fi
if [ -n "$mvn_pid" ]; then
  wait "$mvn_pid" || echo "== fetching Kafka from Maven Central failed (twiwatch kafka up retries it; see .venv/maven-prefetch.log)" >&2
  mvn_pid=""
fi
if [ "$MODE" = test ]; then
  # The dashboard's tests: Debian's Chromium (Playwright drives /usr/bin/chromium; it cannot download its own
  # browsers here), poppler's pdftoppm (the printed ECG grid is measured on the rendered PDF page), axe-core, and
  # PostgreSQL 15's server binaries (the store's tests start a throwaway server; tests/support/postgres.py).
  apt_missing=()
  [ -x /usr/bin/chromium ] || apt_missing+=(chromium)
  command -v pdftoppm >/dev/null || apt_missing+=(poppler-utils)
  [ -x "${TWIWATCH_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || apt_missing+=(postgresql-15)
  if [ ${#apt_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "== installing ${apt_missing[*]} with apt (the dashboard's tests)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
    else
      echo "== the dashboard's tests need ${apt_missing[*]}: install them (e.g. sudo apt-get install -y ${apt_missing[*]}); they fail without" >&2
    fi
  fi
  AXE_VERSION=4
  if [ ! -f "$TWIWATCH_CACHE_DIR/npm/.axe-core-$AXE_VERSION" ]; then
    if command -v npm >/dev/null; then
      echo "== installing axe-core@$AXE_VERSION from npm into $TWIWATCH_CACHE_DIR/npm (first run only)"
      npm install --silent --no-audit --no-fund --prefix "$TWIWATCH_CACHE_DIR/npm" "axe-core@$AXE_VERSION" \
        && touch "$TWIWATCH_CACHE_DIR/npm/.axe-core-$AXE_VERSION"
    else
      echo "== npm is needed to install axe-core for the dashboard's accessibility test (apt-get install npm)" >&2
    fi
  fi
fi
echo "== setup ($MODE) done"
