// ferry-devcluster: one binary that runs a loopback-only Kubernetes control plane (`serve`) and is kubectl
// of the same release (`kubectl ...`, or when invoked through a link named kubectl).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	// The Gateway API module is pinned here so its CRD YAML (config/crd/standard) is in the module cache at
	// the version go.sum names; scripts/build-devcluster.sh copies them from there. This package is tiny.
	_ "sigs.k8s.io/gateway-api/pkg/consts"
)

const usage = `ferry-devcluster: a loopback-only Kubernetes control plane for Ferry's tests and sandbox.

Usage:
  ferry-devcluster serve --data-dir DIR [flags]   run etcd, kube-apiserver, kube-controller-manager and
                                                  kube-scheduler in this process (serve --help for flags)
  ferry-devcluster kubectl [args...]              kubectl of the same release (also: a link named kubectl)
  ferry-devcluster version                        the Kubernetes release this binary was built from
`

func main() {
	if strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe") == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(runServe(os.Args[2:]))
	case "kubectl":
		os.Exit(runKubectl(os.Args[2:]))
	case "version":
		fmt.Println(releaseVersion())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "ferry-devcluster: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
