package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// APIServer is kube-apiserver in a child process of this binary (`apiserver` command), so
// that it can be killed and started again on the same port and the same etcd, as a
// restarted or crashed API server is.
type APIServer struct {
	*Process
	host   string
	port   int
	client *http.Client
}

// apiServerFlags are kube-apiserver's flags: envtest's choice (loopback, RBAC, the
// ServiceAccount admission plugin off since no controller creates `default` accounts) plus
// token signing, so the TokenRequest API issues tokens that TokenReview verifies.
func apiServerFlags(p PKI, etcdURL string, port int, featureGates, runtimeConfig string, extra []string) []string {
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.ServiceAccountKey,
		"--service-account-signing-key-file=" + p.ServiceAccountKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// No endpoints for the `kubernetes` Service: it would need a non-loopback address.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if featureGates != "" {
		args = append(args, "--feature-gates="+featureGates)
	}
	if runtimeConfig != "" {
		args = append(args, "--runtime-config="+runtimeConfig)
	}
	return append(args, extra...)
}

func newAPIServer(p PKI, args []string, host string, port int, logPath string, timeout time.Duration) (*APIServer, error) {
	caPEM, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		return nil, err
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}
	process, err := newComponent("apiserver", args, logPath, timeout)
	if err != nil {
		return nil, err
	}
	a := &APIServer{Process: process, host: host, port: port, client: client}
	process.name = fmt.Sprintf("kube-apiserver (port %d)", port)
	process.ready = a.readyz
	return a, nil
}

// URL is where kube-apiserver serves.
func (a *APIServer) URL() string { return fmt.Sprintf("https://%s:%d", a.host, a.port) }

func (a *APIServer) readyz(context.Context) error {
	resp, err := a.client.Get(a.URL() + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
