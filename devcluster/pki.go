// The dev cluster's certificates and keys, made once per data directory: a cluster CA, the apiserver's
// serving certificate, client certificates whose subjects RBAC's bootstrap bindings know, the
// service-account signing key pair, and etcd's own CA with its serving certificate and the apiserver's
// client certificate (a CA of its own, so no cluster user's certificate opens etcd, which has no RBAC). Existing files are kept, so a restarted cluster keeps its identity
// and the tokens it issued stay valid.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// serviceCIDR is the Service IP range; its first address is the `kubernetes` Service's ClusterIP, which
// the serving certificate must name.
const (
	serviceCIDR      = "10.96.0.0/16"
	kubernetesSvcIP  = "10.96.0.1"
	serviceAccountIs = "https://kubernetes.default.svc.cluster.local"
	certLifetime     = 365 * 24 * time.Hour
)

// pkiPaths are the files under DIR/pki.
type pkiPaths struct {
	Dir                     string
	CACert, CAKey           string
	ServingCert, ServingKey string
	AdminCert, AdminKey     string
	KCMCert, KCMKey         string
	SchedulerCert, SchedKey string
	ServiceAccountKey       string
	ServiceAccountPublicKey string
	EtcdCACert, EtcdCAKey   string
	EtcdServerCert          string
	EtcdServerKey           string
	EtcdClientCert          string
	EtcdClientKey           string
}

func newPKIPaths(dataDir string) pkiPaths {
	dir := filepath.Join(dataDir, "pki")
	p := func(name string) string { return filepath.Join(dir, name) }
	return pkiPaths{
		Dir:    dir,
		CACert: p("ca.crt"), CAKey: p("ca.key"),
		ServingCert: p("apiserver.crt"), ServingKey: p("apiserver.key"),
		AdminCert: p("admin.crt"), AdminKey: p("admin.key"),
		KCMCert: p("kube-controller-manager.crt"), KCMKey: p("kube-controller-manager.key"),
		SchedulerCert: p("kube-scheduler.crt"), SchedKey: p("kube-scheduler.key"),
		ServiceAccountKey: p("sa.key"), ServiceAccountPublicKey: p("sa.pub"),
		EtcdCACert: p("etcd-ca.crt"), EtcdCAKey: p("etcd-ca.key"),
		EtcdServerCert: p("etcd-server.crt"), EtcdServerKey: p("etcd-server.key"),
		EtcdClientCert: p("apiserver-etcd-client.crt"), EtcdClientKey: p("apiserver-etcd-client.key"),
	}
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type leafFiles struct {
	cert, key string
	template  func() *x509.Certificate
}

// ensurePKI makes whatever of the files is missing. A CA that has to be made anew invalidates every leaf
// it signed, so then those are made again too.
func ensurePKI(p pkiPaths) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	etcdCA, etcdCreated, err := loadOrCreateCA(p.EtcdCACert, p.EtcdCAKey, "ferry-devcluster-etcd-ca")
	if err != nil {
		return err
	}
	etcdLeaves := []leafFiles{
		// etcd presents this one to clients and to its peer listener's clients, and uses it as a client
		// towards its own peer URL, so it carries both usages.
		{p.EtcdServerCert, p.EtcdServerKey, etcdServerTemplate},
		{p.EtcdClientCert, p.EtcdClientKey, clientTemplate("kube-apiserver-etcd-client")},
	}
	if err := ensureLeaves(etcdCA, etcdCreated, etcdLeaves); err != nil {
		return err
	}
	ca, created, err := loadOrCreateCA(p.CACert, p.CAKey, "ferry-devcluster-ca")
	if err != nil {
		return err
	}
	leaves := []leafFiles{
		{p.ServingCert, p.ServingKey, servingTemplate},
		// O=system:masters is bound to cluster-admin by RBAC's bootstrap policy.
		{p.AdminCert, p.AdminKey, clientTemplate("ferry-admin", "system:masters")},
		// The bootstrap ClusterRoleBindings system:kube-controller-manager and system:kube-scheduler name
		// these users.
		{p.KCMCert, p.KCMKey, clientTemplate("system:kube-controller-manager")},
		{p.SchedulerCert, p.SchedKey, clientTemplate("system:kube-scheduler")},
	}
	if err := ensureLeaves(ca, created, leaves); err != nil {
		return err
	}
	if created || !exists(p.ServiceAccountKey) || !exists(p.ServiceAccountPublicKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		if err := writeKey(p.ServiceAccountKey, key); err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return err
		}
		if err := writePEM(p.ServiceAccountPublicKey, "PUBLIC KEY", der, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func ensureLeaves(ca keyPair, caCreated bool, leaves []leafFiles) error {
	for _, leaf := range leaves {
		if !caCreated && exists(leaf.cert) && exists(leaf.key) {
			continue
		}
		if err := issue(ca, leaf.template(), leaf.cert, leaf.key); err != nil {
			return err
		}
	}
	return nil
}

func loadOrCreateCA(certPath, keyPath, commonName string) (keyPair, bool, error) {
	if exists(certPath) && exists(keyPath) {
		kp, err := loadKeyPair(certPath, keyPath)
		return kp, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, false, err
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return keyPair{}, false, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, false, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return keyPair{}, false, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return keyPair{}, false, err
	}
	return keyPair{cert: cert, key: key}, true, nil
}

func servingTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(kubernetesSvcIP)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

func etcdServerTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: "ferry-devcluster-etcd"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

func clientTemplate(commonName string, organizations ...string) func() *x509.Certificate {
	return func() *x509.Certificate {
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: commonName, Organization: organizations},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
}

func issue(ca keyPair, template *x509.Certificate, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	template.SerialNumber = serial()
	template.NotBefore = now.Add(-time.Hour)
	template.NotAfter = now.Add(certLifetime)
	template.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("issue %s: %w", template.Subject.CommonName, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func loadKeyPair(certPath, keyPath string) (keyPair, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return keyPair{}, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return keyPair{}, fmt.Errorf("%s: no PEM CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return keyPair{}, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return keyPair{}, err
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return keyPair{}, fmt.Errorf("%s: no PEM PRIVATE KEY block", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return keyPair{}, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return keyPair{}, errors.New(keyPath + ": not a signing key")
	}
	return keyPair{cert: cert, key: signer}, nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePEM writes through a temporary file and a rename, so a reader never sees half a file.
func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
