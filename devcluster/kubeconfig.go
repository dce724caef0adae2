// Kubeconfig files for the dev cluster's users, with the certificates embedded so each file stands alone.
package main

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type kubeconfigUser struct {
	name     string
	certFile string
	keyFile  string
}

func writeKubeconfig(path, server, caFile string, user kubeconfigUser) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(user.certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(user.keyFile)
	if err != nil {
		return err
	}
	const cluster = "ferry-devcluster"
	config := clientcmdapi.NewConfig()
	config.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	config.AuthInfos[user.name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	config.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user.name, Namespace: "default"}
	config.CurrentContext = cluster
	data, err := clientcmd.Write(*config)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return writeFileAtomic(path, data, 0o600)
}
