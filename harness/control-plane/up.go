package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Info is `up`'s ready line and DIR/control-plane.json: where everything is.
type Info struct {
	Kubeconfig string   `json:"kubeconfig"`
	Server     string   `json:"server"`
	Control    string   `json:"control"`
	Etcd       string   `json:"etcd"`
	Dir        string   `json:"dir"`
	PID        int      `json:"pid"`
	Versions   Versions `json:"versions"`
}

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for certificates, etcd data, logs and the kubeconfig (required)")
	port := fs.Int("port", 0, "kube-apiserver's secure port on 127.0.0.1 (0: a free one)")
	etcdPort := fs.Int("etcd-port", 0, "etcd's client port (0: a free one)")
	controlPort := fs.Int("control-port", 0, "the control API's port (0: a free one)")
	featureGates := fs.String("feature-gates", "", "kube-apiserver --feature-gates, e.g. ContainerRestartRules=true")
	runtimeConfig := fs.String("runtime-config", "", "kube-apiserver --runtime-config")
	timeout := fs.Duration("timeout", time.Minute, "how long etcd and kube-apiserver may take to become ready")
	exitWithStdin := fs.Bool("exit-with-stdin", false, "stop when standard input closes (the parent ended)")
	removeDir := fs.Bool("remove-dir", false, "remove --dir (etcd data, certificates, logs) when stopping")
	var extra repeated
	fs.Var(&extra, "apiserver-arg", "one more kube-apiserver flag (repeatable), e.g. --apiserver-arg=--v=2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("up: --dir is required")
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absDir, 0o755); err != nil {
		return fmt.Errorf("step 'directory': %w", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if *removeDir {
		// Deferred first, so it runs last: after kube-apiserver and etcd have stopped.
		defer os.RemoveAll(absDir)
	}

	pki, err := makePKI(filepath.Join(absDir, "pki"))
	if err != nil {
		return fmt.Errorf("step 'certificates': %w", err)
	}
	ports, err := choosePorts(map[string]int{"kube-apiserver --port": *port, "etcd --etcd-port": *etcdPort, "etcd peer": 0})
	if err != nil {
		return fmt.Errorf("step 'ports': %w", err)
	}
	control, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *controlPort))
	if err != nil {
		return fmt.Errorf("step 'ports': control API --control-port %d: %w", *controlPort, err)
	}
	etcd, err := startEtcd(absDir, ports["etcd --etcd-port"], ports["etcd peer"], *timeout)
	// A port chosen here is free when chosen and bound by etcd a moment later: another
	// process (a parallel test's control plane) can take it in between. Choose again then,
	// unless the port was asked for.
	for attempt := 1; err != nil && attempt < 3 && *etcdPort == 0 && addressInUse(err); attempt++ {
		if err := os.RemoveAll(filepath.Join(absDir, "etcd")); err != nil {
			return fmt.Errorf("step 'etcd': %w", err)
		}
		ports, err = choosePorts(map[string]int{"kube-apiserver --port": *port, "etcd --etcd-port": 0, "etcd peer": 0})
		if err != nil {
			return fmt.Errorf("step 'ports': %w", err)
		}
		etcd, err = startEtcd(absDir, ports["etcd --etcd-port"], ports["etcd peer"], *timeout)
	}
	if err != nil {
		return fmt.Errorf("step 'etcd': %w", err)
	}
	defer etcd.Close()
	apiPort := ports["kube-apiserver --port"]
	flags := apiServerFlags(pki, etcd.URL, apiPort, *featureGates, *runtimeConfig, extra)
	api, err := newAPIServer(pki, flags, "127.0.0.1", apiPort, filepath.Join(absDir, "kube-apiserver.log"), *timeout)
	if err != nil {
		return fmt.Errorf("step 'kube-apiserver': %w", err)
	}
	if err := api.Start(ctx); err != nil {
		return fmt.Errorf("step 'kube-apiserver': %w", err)
	}
	defer func() { _ = api.Stop(0) }()

	kubeconfig := filepath.Join(absDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, api.URL(), pki); err != nil {
		return fmt.Errorf("step 'kubeconfig': %w", err)
	}
	info := Info{
		Kubeconfig: kubeconfig, Server: api.URL(), Control: "http://" + control.Addr().String(),
		Etcd: etcd.URL, Dir: absDir, PID: os.Getpid(), Versions: versions(),
	}
	line, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(absDir, "control-plane.json"), line, 0o644); err != nil {
		return fmt.Errorf("step 'info': %w", err)
	}
	go func() {
		_ = http.Serve(control, controlAPI(ctx, info, etcd, map[string]controlled{"apiserver": {api.Process, 0}}))
	}()
	fmt.Printf("ready %s\n", line)
	fmt.Fprintf(os.Stderr, "kube-apiserver %s and etcd %s (%s) on %s; kubeconfig %s\n",
		info.Versions.KubeAPIServer, info.Versions.Etcd, info.Versions.Go, info.Server, kubeconfig)

	stdinClosed := make(chan struct{})
	if *exitWithStdin {
		go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin)); close(stdinClosed) }()
	}
	select {
	case <-ctx.Done():
	case <-stdinClosed:
	}
	return nil
}

// addressInUse tells a port taken by another process, however etcd wraps the error.
func addressInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// choosePorts returns each named port: the one asked for, checked to be free, or a free one.
func choosePorts(asked map[string]int) (map[string]int, error) {
	out := map[string]int{}
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for name, port := range asked {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, fmt.Errorf("%s %d: %w", name, port, err)
		}
		held = append(held, l)
		out[name] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

func writeKubeconfig(path, server string, p PKI) error {
	read := func(f string) []byte { b, _ := os.ReadFile(f); return b }
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sidecar-watch-harness"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: read(p.CACert)}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: read(p.AdminCert), ClientKeyData: read(p.AdminKey)}
	cfg.Contexts["sidecar-watch-harness"] = &clientcmdapi.Context{Cluster: "sidecar-watch-harness", AuthInfo: "admin"}
	cfg.CurrentContext = "sidecar-watch-harness"
	return clientcmd.WriteToFile(*cfg, path)
}
