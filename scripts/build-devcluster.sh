#!/usr/bin/env bash
# Builds the dev cluster (devcluster/, Go) into build/devcluster/: bin/ferry-devcluster, bin/kubectl (a link to
# it) and crds/gateway-api/*.yaml (the standard-channel CRDs of the Gateway API module that go.mod pins).
# Rebuilds only when an input changed: the sha256 of devcluster/*.go, go.mod, go.sum, this script and
# `go version` is kept in build/devcluster/stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/devcluster
bin="$out/bin/ferry-devcluster"
crds="$out/crds/gateway-api"
stamp_file="$out/stamp"

command -v go >/dev/null || { echo "build-devcluster: go is not on PATH (devcluster/go.mod needs Go $(sed -n 's/^go //p' devcluster/go.mod))" >&2; exit 1; }

stamp="$( (sha256sum devcluster/*.go devcluster/go.mod devcluster/go.sum scripts/build-devcluster.sh; go version) | sha256sum | cut -d' ' -f1)"
if [ -x "$bin" ] && [ -L "$out/bin/kubectl" ] && [ -d "$crds" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  echo "build-devcluster: $bin is up to date"
  exit 0
fi

started=$(date +%s)
cd devcluster
# The release every component and kubectl report (`kubectl version`, /version): the k8s.io/kubernetes version
# go.mod requires, stamped the way kubernetes' hack/lib/version.sh does for its own builds.
version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="${version#v1.}"
minor="${minor%%.*}"
# The release's publication time, so the same inputs give the same binary.
build_date="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z} -X $pkg.gitCommit="
done
mkdir -p "../$out/bin"
# Static and reproducible: no cgo, no build paths in the binary.
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "../$bin.tmp" .
mv "../$bin.tmp" "../$bin"
ln -sfn ferry-devcluster "../$out/bin/kubectl"

gateway_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)"
gateway_version="$(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)"
test -d "$gateway_dir/config/crd/standard" || { echo "build-devcluster: $gateway_dir/config/crd/standard missing" >&2; exit 1; }
rm -rf "../$crds"
mkdir -p "../$crds"
cp "$gateway_dir"/config/crd/standard/*.yaml "../$crds/"
# The module cache is read-only; the copies need not be.
chmod 0644 "../$crds"/*.yaml
echo "$gateway_version" >"../$crds/VERSION"
cd ..

echo "$stamp" >"$stamp_file"
echo "build-devcluster: built $bin ($version, Gateway API $gateway_version CRDs) in $(($(date +%s) - started)) s"
