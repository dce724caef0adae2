// The kubectl of the release this binary is built from: upstream's own command, as cmd/kubectl runs it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	utilversion "k8s.io/component-base/version"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

// runKubectl runs kubectl with args (without the program name). kubectl reads os.Args itself (plugins,
// verbosity), so it is rewritten to look like a plain `kubectl args...` invocation first.
func runKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Prints the error and exits with kubectl's exit code.
		util.CheckErr(err)
	}
	return 0
}

// releaseVersion is the gitVersion stamped in by scripts/build-devcluster.sh (-ldflags -X), e.g. v1.37.2.
func releaseVersion() string {
	return utilversion.Get().GitVersion
}
