package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// APIServer runs kube-apiserver as a child process of this binary (`apiserver` command), so
// that it can be killed and started again on the same port and the same etcd, as a
// restarted or crashed API server is.
type APIServer struct {
	args    []string
	logPath string
	port    int
	client  *http.Client
	timeout time.Duration

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
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

func newAPIServer(p PKI, args []string, port int, logPath string, timeout time.Duration) (*APIServer, error) {
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
	return &APIServer{args: args, logPath: logPath, port: port, client: client, timeout: timeout}, nil
}

// URL is where kube-apiserver serves.
func (a *APIServer) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", a.port) }

// Start starts kube-apiserver and waits until /readyz answers 200.
func (a *APIServer) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return errors.New("kube-apiserver is already running")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n----- sidecar-watch-control-plane: starting kube-apiserver %s -----\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command(self, append([]string{"apiserver"}, a.args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	// The API server dies with this process, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	a.cmd, a.exited = cmd, exited
	return a.waitReady(ctx, exited)
}

func (a *APIServer) waitReady(ctx context.Context, exited chan struct{}) error {
	deadline := time.Now().Add(a.timeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			a.cmd = nil
			return fmt.Errorf("kube-apiserver (port %d) exited before it was ready; last lines of %s:\n%s",
				a.port, a.logPath, tail(a.logPath, 15))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := a.client.Get(a.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready within %s (last /readyz: %s); last lines of %s:\n%s",
		a.timeout, last, a.logPath, tail(a.logPath, 15))
}

// Stop kills kube-apiserver: SIGKILL, as a crash or a lost node ends it (connections and
// watches break without a goodbye).
func (a *APIServer) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return errors.New("kube-apiserver is not running")
	}
	_ = a.cmd.Process.Kill()
	<-a.exited
	a.cmd = nil
	return nil
}

// Running reports whether the child process is alive.
func (a *APIServer) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
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
