// `serve`: embedded etcd, kube-apiserver, kube-controller-manager and kube-scheduler in one process, all on
// loopback, everything they write kept under the data directory.
//
// Each component is run through its app package's Run function, not its cobra command: the commands install
// process-wide signal handlers (genericapiserver.SetupSignalContext panics when a second one is installed), so
// three of them cannot share a process. Here one context per component is cancelled in order on SIGTERM,
// SIGINT or the parent's death: controllers and scheduler first, then the apiserver, then etcd.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

type serveOptions struct {
	dataDir        string
	port           int
	logFile        string
	exitWithParent bool
	verbosity      int
	readyTimeout   time.Duration
	apiserverArgs  repeatedFlag
}

// repeatedFlag collects every occurrence of a flag, in order.
type repeatedFlag []string

func (r *repeatedFlag) String() string     { return fmt.Sprint([]string(*r)) }
func (r *repeatedFlag) Set(v string) error { *r = append(*r, v); return nil }

// clusterInfo is DIR/cluster.json, written once the apiserver is ready and removed on exit.
type clusterInfo struct {
	Server          string `json:"server"`
	Pid             int    `json:"pid"`
	DataDir         string `json:"dataDir"`
	Kubeconfig      string `json:"kubeconfig"`
	CACert          string `json:"caCert"`
	AdminCert       string `json:"adminCert"`
	AdminKey        string `json:"adminKey"`
	EtcdClientURL   string `json:"etcdClientUrl"`
	EtcdCACert      string `json:"etcdCaCert"`
	EtcdClientCert  string `json:"etcdClientCert"`
	EtcdClientKey   string `json:"etcdClientKey"`
	ServiceCIDR     string `json:"serviceCidr"`
	ServiceAccounts string `json:"serviceAccountIssuer"`
	Version         string `json:"version"`
}

func runServe(args []string) int {
	var o serveOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for certificates, etcd data, kubeconfigs and cluster.json (required)")
	fs.IntVar(&o.port, "port", 0, "apiserver port on 127.0.0.1; 0 picks a free one")
	fs.StringVar(&o.logFile, "log-file", "", "append every component's log here instead of stderr")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false,
		"shut down when the process that started this one exits (for launchers that cannot set PR_SET_PDEATHSIG)")
	fs.IntVar(&o.verbosity, "v", 0, "klog verbosity of all components")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "give up when the apiserver is not ready this long after start")
	fs.Var(&o.apiserverArgs, "apiserver-arg",
		"one more kube-apiserver flag, e.g. --apiserver-arg=--etcd-compaction-interval=2s (repeatable; after the dev cluster's own, so it wins)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "serve: --data-dir DIR is required and no positional arguments are taken")
		return 2
	}
	if o.port < 0 || o.port > 65535 {
		fmt.Fprintf(os.Stderr, "serve: --port %d is not a port\n", o.port)
		return 2
	}
	if err := serve(o); err != nil {
		klog.ErrorS(err, "dev cluster failed")
		klog.Flush()
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		return 1
	}
	klog.Flush()
	return 0
}

func serve(o serveOptions) error {
	// The parent is recorded before anything else, so a parent that dies during start-up is noticed too.
	parent := os.Getppid()
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if o.logFile != "" {
		if err := redirectOutput(o.logFile); err != nil {
			return err
		}
	}
	configureKlog(o.verbosity)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.exitWithParent {
		ctx = watchParent(ctx, parent)
	}

	// The apiserver's port first: a --port already taken fails before anything else starts.
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("apiserver listener: %w", err)
	}
	// The apiserver closes it when it stops; this covers the returns before it takes it over.
	defer listener.Close()
	port := listener.Addr().(*net.TCPAddr).Port
	server := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	pki := newPKIPaths(dataDir)
	if err := ensurePKI(pki); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	etcdClient, etcdPeer, err := freeLoopbackPorts()
	if err != nil {
		return err
	}
	etcdServer, etcdURL, err := startEtcd(ctx, filepath.Join(dataDir, "etcd"), pki, etcdClient, etcdPeer)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	// etcd is closed last, after every component that talks to it has returned.
	defer etcdServer.Close()

	components := newSupervisor()
	apiCtx, apiCancel := context.WithCancel(context.Background())
	defer apiCancel()
	components.start("kube-apiserver", func() error {
		return runAPIServer(apiCtx, append(apiServerArgs(dataDir, pki, etcdURL, port), o.apiserverArgs...), listener)
	})

	if err := waitReady(ctx, components, server, pki, o.readyTimeout); err != nil {
		apiCancel()
		components.waitAll(15 * time.Second)
		return err
	}

	kubeconfigs := map[string]kubeconfigUser{
		"admin.kubeconfig":                   {"ferry-admin", pki.AdminCert, pki.AdminKey},
		"kube-controller-manager.kubeconfig": {"system:kube-controller-manager", pki.KCMCert, pki.KCMKey},
		"kube-scheduler.kubeconfig":          {"system:kube-scheduler", pki.SchedulerCert, pki.SchedKey},
	}
	// admin.kubeconfig is written last of them: its appearance tells a launcher that the apiserver is up.
	for _, name := range []string{"kube-controller-manager.kubeconfig", "kube-scheduler.kubeconfig", "admin.kubeconfig"} {
		if err := writeKubeconfig(filepath.Join(dataDir, name), server, pki.CACert, kubeconfigs[name]); err != nil {
			return err
		}
	}

	controllersCtx, controllersCancel := context.WithCancel(context.Background())
	defer controllersCancel()
	components.start("kube-controller-manager", func() error {
		return runControllerManager(controllersCtx, controllerManagerArgs(dataDir, pki))
	})
	components.start("kube-scheduler", func() error {
		return runScheduler(controllersCtx, schedulerArgs(dataDir))
	})

	infoPath := filepath.Join(dataDir, "cluster.json")
	info := clusterInfo{
		Server: server, Pid: os.Getpid(), DataDir: dataDir,
		Kubeconfig: filepath.Join(dataDir, "admin.kubeconfig"), CACert: pki.CACert, AdminCert: pki.AdminCert, AdminKey: pki.AdminKey, EtcdClientURL: etcdURL,
		EtcdCACert: pki.EtcdCACert, EtcdClientCert: pki.EtcdClientCert, EtcdClientKey: pki.EtcdClientKey,
		ServiceCIDR: serviceCIDR, ServiceAccounts: serviceAccountIs, Version: releaseVersion(),
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(infoPath, append(data, '\n'), 0o644); err != nil {
		return err
	}
	defer os.Remove(infoPath)
	klog.InfoS("dev cluster serving", "server", server, "dataDir", dataDir, "etcd", etcdURL)

	// Run until asked to stop or until a component gives up (which none does on its own while healthy).
	var failure error
	select {
	case <-ctx.Done():
		klog.InfoS("dev cluster stopping", "cause", context.Cause(ctx))
	case failed := <-components.exited:
		failure = fmt.Errorf("%s exited: %v", failed.name, failed.err)
		klog.ErrorS(failed.err, "component exited; stopping the dev cluster", "component", failed.name)
	}

	// Controllers and scheduler go first so none of them logs errors against a closing apiserver.
	controllersCancel()
	components.wait([]string{"kube-controller-manager", "kube-scheduler"}, 5*time.Second)
	apiCancel()
	components.wait([]string{"kube-apiserver"}, 10*time.Second)
	return failure
}

// watchParent cancels ctx when this process is re-parented, i.e. the process that started it is gone.
// Node.js cannot ask the kernel for PR_SET_PDEATHSIG on a child, so the child looks for itself.
func watchParent(ctx context.Context, parent int) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		ticker := time.NewTicker(250 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				if os.Getppid() != parent {
					cancel(fmt.Errorf("parent process %d exited", parent))
					return
				}
			}
		}
	}()
	return ctx
}

// redirectOutput points this process's stdout and stderr at path (appending), so that klog, etcd's zap
// logger and anything else printing go to one file.
func redirectOutput(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer f.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			return fmt.Errorf("log file: dup3 onto fd %d: %w", fd, err)
		}
	}
	return nil
}

func configureKlog(verbosity int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(verbosity))
	_ = fs.Set("logtostderr", "true")
}

// freeLoopbackPorts picks two ports free on 127.0.0.1 for etcd, which binds its own listeners. They are
// held open together so the two differ; between closing them and etcd binding another process could take
// one, and then etcd fails to start with a clear "address already in use".
func freeLoopbackPorts() (int, int, error) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	return a.Addr().(*net.TCPAddr).Port, b.Addr().(*net.TCPAddr).Port, nil
}

// startEtcd runs a one-member etcd whose client and peer listeners both require a client certificate of
// etcd's own CA: etcd has no authorization of its own, so anyone who can write to it owns the cluster.
func startEtcd(ctx context.Context, dir string, pki pkiPaths, clientPort, peerPort int) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "ferry-devcluster"
	cfg.Dir = dir
	tlsInfo := transport.TLSInfo{
		CertFile: pki.EtcdServerCert, KeyFile: pki.EtcdServerKey, TrustedCAFile: pki.EtcdCACert, ClientCertAuth: true,
	}
	cfg.ClientTLSInfo = tlsInfo
	cfg.PeerTLSInfo = tlsInfo
	clientURL := url.URL{Scheme: "https", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	peerURL := url.URL{Scheme: "https", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.ListenMetricsUrls = nil
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	cfg.QuotaBackendBytes = 2 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, clientURL.String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("not ready within 60 s")
	case <-ctx.Done():
		e.Close()
		return nil, "", context.Cause(ctx)
	}
}

// waitReady polls the apiserver's /readyz as the admin until it answers 200 "ok".
func waitReady(ctx context.Context, components *supervisor, server string, pki pkiPaths, timeout time.Duration) error {
	client, err := adminHTTPClient(pki)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case failed := <-components.exited:
			return fmt.Errorf("%s exited before it was ready: %v", failed.name, failed.err)
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "ok" {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within %s: /readyz: %s", timeout, last)
		}
	}
}

func adminHTTPClient(pki pkiPaths) (*http.Client, error) {
	caPEM, err := os.ReadFile(pki.CACert)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.AdminCert, pki.AdminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		},
	}, nil
}

// supervisor runs components in goroutines and reports each one's return.
type supervisor struct {
	mu     sync.Mutex
	done   map[string]chan struct{}
	exited chan exit
}

type exit struct {
	name string
	err  error
}

func newSupervisor() *supervisor {
	return &supervisor{done: map[string]chan struct{}{}, exited: make(chan exit, 8)}
}

func (s *supervisor) start(name string, run func() error) {
	done := make(chan struct{})
	s.mu.Lock()
	s.done[name] = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		err := run()
		if err == nil {
			err = errors.New("returned")
		}
		s.exited <- exit{name: name, err: err}
	}()
}

// wait waits for the named components to return, each at most until the shared deadline.
func (s *supervisor) wait(names []string, timeout time.Duration) {
	deadline := time.After(timeout)
	for _, name := range names {
		s.mu.Lock()
		done := s.done[name]
		s.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-deadline:
			klog.InfoS("component did not stop in time; going on", "component", name, "timeout", timeout)
			return
		}
	}
}

func (s *supervisor) waitAll(timeout time.Duration) {
	s.mu.Lock()
	names := make([]string, 0, len(s.done))
	for name := range s.done {
		names = append(names, name)
	}
	s.mu.Unlock()
	s.wait(names, timeout)
}
