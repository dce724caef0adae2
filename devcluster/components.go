// The three control-plane components, each configured with its own upstream flags and run through its
// app package with a context this process controls.
package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	cliflag "k8s.io/component-base/cli/flag"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	controllermanageroptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// The controllers the dev cluster runs. The node lifecycle controller is what lifts the not-ready taint the
// TaintNodesByCondition admission plugin puts on every new Node (and taints a Node whose status says NotReady,
// or that posts no status within the default startup grace of a minute). Its heartbeat grace is a year,
// because the sandbox's nodes post their status once and renew no Leases, and must not become "unreachable".
// Left out on purpose: taint-based eviction and pod GC (they delete pods of Nodes that look gone or are not
// registered), and everything Ferry does not exercise. Cluster-role aggregation is in because the bootstrap admin/edit/view roles need it.
var controllers = []string{
	"serviceaccount-token-controller", "serviceaccount-controller", "namespace-controller",
	"garbage-collector-controller", "endpointslice-controller", "endpointslice-mirroring-controller",
	"replicaset-controller", "deployment-controller", "root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller", "node-lifecycle-controller",
}

func apiServerArgs(dataDir string, pki pkiPaths, etcdURL string, port int) []string {
	return []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		// Where the apiserver would write self-signed certificates; it has ours, but keep it inside DIR.
		"--cert-dir=" + filepath.Join(dataDir, "apiserver"),
		"--etcd-servers=" + etcdURL,
		"--etcd-cafile=" + pki.EtcdCACert,
		"--etcd-certfile=" + pki.EtcdClientCert,
		"--etcd-keyfile=" + pki.EtcdClientKey,
		"--client-ca-file=" + pki.CACert,
		"--tls-cert-file=" + pki.ServingCert,
		"--tls-private-key-file=" + pki.ServingKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-issuer=" + serviceAccountIs,
		"--api-audiences=" + serviceAccountIs,
		"--service-account-key-file=" + pki.ServiceAccountPublicKey,
		"--service-account-signing-key-file=" + pki.ServiceAccountKey,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation refuses
		// (loopback), so the apiserver would retry and log that forever; nothing in a dev cluster reaches the
		// apiserver through that Service.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--enable-logs-handler=false",
	}
}

func controllerManagerArgs(dataDir string, pki pkiPaths) []string {
	kubeconfig := filepath.Join(dataDir, "kube-controller-manager.kubeconfig")
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		// No HTTPS endpoint of its own: nothing scrapes it, and a listener is one more thing to secure.
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--controllers=" + strings.Join(controllers, ","),
		// Each controller acts with its own service account's token, so RBAC's per-controller bootstrap
		// roles apply exactly as in a cluster made by kubeadm.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pki.ServiceAccountKey,
		"--root-ca-file=" + pki.CACert,
		"--cluster-name=ferry-devcluster",
		"--node-monitor-grace-period=8760h",
		"--profiling=false",
	}
}

func schedulerArgs(dataDir string) []string {
	kubeconfig := filepath.Join(dataDir, "kube-scheduler.kubeconfig")
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--profiling=false",
	}
}

// parseFlags parses args into the component's own named flag sets, as its cobra command would.
func parseFlags(component string, sets cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	for _, set := range sets.FlagSets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}

// runAPIServer is cmd/kube-apiserver's RunE with the context and the listener passed in: the listener is
// bound before the apiserver starts, so the port is known and nothing else can take it meanwhile.
func runAPIServer(ctx context.Context, args []string, listener net.Listener) error {
	s := apiserveroptions.NewServerRunOptions()
	if err := parseFlags("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	s.SecureServing.Listener = listener
	s.SecureServing.BindPort = listener.Addr().(*net.TCPAddr).Port
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	return apiserver.Run(ctx, completed)
}

// runControllerManager is cmd/kube-controller-manager's RunE with the context passed in.
func runControllerManager(ctx context.Context, args []string) error {
	s, err := controllermanageroptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known := controllermanager.KnownControllers()
	disabled := controllermanager.ControllersDisabledByDefault()
	aliases := controllermanager.ControllerAliases()
	sets := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &sets
	if err := parseFlags("kube-controller-manager", sets, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return controllermanager.Run(ctx, c.Complete())
}

// runScheduler is cmd/kube-scheduler's runCommand with the context passed in.
func runScheduler(ctx context.Context, args []string) error {
	opts := scheduleroptions.NewOptions()
	if err := parseFlags("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := scheduler.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return scheduler.Run(ctx, cc, sched)
}
