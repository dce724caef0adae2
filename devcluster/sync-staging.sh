#!/usr/bin/env bash
# Points devcluster/go.mod's k8s.io staging modules at the release of k8s.io/kubernetes it requires.
# k8s.io/kubernetes replaces each staging module with ./staging/src/k8s.io/X at v0.0.0, which a module that
# depends on it cannot follow; the list of those modules is read from that release's own go.mod, never typed.
# Also pins go.etcd.io/etcd/server/v3 at the version that go.mod requires.
# Usage: devcluster/sync-staging.sh [v1.X.Y]   (default: the k8s.io/kubernetes version devcluster/go.mod requires)
set -euo pipefail
cd "$(dirname "$0")"

# go mod edit -json prints the module's go.mod as JSON; node (which Ferry needs anyway) reads it.
json_field() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);console.log(($1)??'')})"; }

version="${1:-$(go mod edit -json | json_field "(j.Require||[]).find(r=>r.Path==='k8s.io/kubernetes')?.Version")}"
case "$version" in
  v1.*.*) ;;
  *) echo "sync-staging: cannot read a k8s.io/kubernetes v1.X.Y version (got '$version')" >&2; exit 1 ;;
esac
# Staging modules are published as v0.X.Y for kubernetes v1.X.Y.
staging_version="v0.${version#v1.}"

if ! download="$(go mod download -json "k8s.io/kubernetes@$version")"; then
  echo "sync-staging: k8s.io/kubernetes@$version: $(echo "$download" | json_field "j.Error")" >&2
  exit 1
fi
gomod="$(echo "$download" | json_field "j.GoMod")"
test -f "$gomod" || { echo "sync-staging: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }

# `k8s.io/X => ./staging/src/k8s.io/X`, inside a replace block or on a replace line of its own.
mapfile -t staging < <(go mod edit -json "$gomod" | json_field \
  "(j.Replace||[]).filter(r=>r.New.Path==='./staging/src/'+r.Old.Path).map(r=>r.Old.Path).sort().join('\n')")
if [ "${#staging[@]}" -lt 10 ]; then
  echo "sync-staging: found only ${#staging[@]} staging replaces in $gomod; did its format change?" >&2
  exit 1
fi
etcd="$(go mod edit -json "$gomod" | json_field "(j.Require||[]).find(r=>r.Path==='go.etcd.io/etcd/server/v3')?.Version")"
test -n "$etcd" || { echo "sync-staging: $gomod requires no go.etcd.io/etcd/server/v3" >&2; exit 1; }

# Drop every replace we have, then add exactly the staging list: the two sets stay equal.
edits=()
while read -r old; do
  [ -n "$old" ] && edits+=("-dropreplace=$old")
done < <(go mod edit -json | json_field "(j.Replace||[]).map(r=>r.Old.Path).join('\n')")
for module in "${staging[@]}"; do
  edits+=("-replace=$module=$module@$staging_version")
done
go mod edit -require="k8s.io/kubernetes@$version" -require="go.etcd.io/etcd/server/v3@$etcd" "${edits[@]}"
echo "sync-staging: k8s.io/kubernetes $version, ${#staging[@]} staging modules at $staging_version, etcd server $etcd"
echo "sync-staging: after a version change run (cd devcluster && go mod tidy) and scripts/build-devcluster.sh"
