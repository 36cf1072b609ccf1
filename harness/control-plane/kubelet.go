package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeletFlags writes the kubelet's configuration file and returns its flags: the node's
// containerd, cgroupfs (this VM mounts cgroup v1 hierarchies, which the kubelet refuses since
// 1.35 unless failCgroupV1 is false; on a cgroup v2 host the same file works), webhook
// authentication and authorization against the API server, and no image garbage collection
// (no registry can give an image back).
func kubeletFlags(o nodeOptions, pki PKI, kubeconfig string) ([]string, error) {
	dir := filepath.Join(o.dir, "kubelet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	serving := clientCert("system:node:" + o.node)
	serving.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serving.IPAddresses = append(serving.IPAddresses, o.gateway)
	serving.DNSNames = []string{o.node}
	cert, key := filepath.Join(o.dir, "pki", "kubelet-serving.crt"), filepath.Join(o.dir, "pki", "kubelet-serving.key")
	if err := pki.issue(cert, key, serving); err != nil {
		return nil, err
	}
	ports, err := choosePorts(map[string]int{"kubelet": 0, "kubelet healthz": 0})
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://%[7]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# The kubelet's own score stays as it is (lowering it needs CAP_SYS_RESOURCE; see containerd.go).
oomScoreAdj: 0
# Never evict or collect: disk and memory are shared with the build, and an image collected
# here cannot be pulled again.
evictionHard: {memory.available: "1Mi", nodefs.available: "0%%", imagefs.available: "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
`, o.gateway, ports["kubelet"], ports["kubelet healthz"], cert, key, pki.CACert, containerdSocket(o.dir))
	if o.featureGates != "" {
		config += "featureGates:\n"
		for _, gate := range splitGates(o.featureGates) {
			config += fmt.Sprintf("  %s: %s\n", gate[0], gate[1])
		}
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"--config=" + path,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + dir,
		"--hostname-override=" + o.node,
		"--node-ip=" + o.gateway.String(),
		"--v=2",
		cadvisorContainerdFlag + containerdSocket(o.dir),
	}, nil
}

// cadvisorContainerdFlag is this binary's own flag in the kubelet child's arguments: the
// socket of the node's containerd for the kubelet's cAdvisor.
const cadvisorContainerdFlag = "--cadvisor-containerd="

// pointCadvisorAtContainerd takes cadvisorContainerdFlag out of the kubelet's arguments and
// sets cAdvisor's `containerd` endpoint (a flag of Go's global set: 1.34's kubelet still
// registers it as a deprecated flag of its own, 1.37's does not) to it. cAdvisor dials /run/containerd/containerd.sock
// otherwise, and without the node's containerd its per-container series
// (container_memory_working_set_bytes, …) come without `container`, `pod` and `namespace`.
func pointCadvisorAtContainerd(args []string) ([]string, error) {
	rest := make([]string, 0, len(args))
	for _, arg := range args {
		socket, ok := strings.CutPrefix(arg, cadvisorContainerdFlag)
		if !ok {
			rest = append(rest, arg)
			continue
		}
		if err := flag.Set("containerd", socket); err != nil {
			return nil, fmt.Errorf("cAdvisor's containerd endpoint: %w", err)
		}
	}
	return rest, nil
}

// proxyFlags writes kube-proxy's configuration (iptables, as most clusters run it; Pods
// reach kube-apiserver through the `kubernetes` Service's ClusterIP) and returns its flags.
func proxyFlags(o nodeOptions, kubeconfig string) ([]string, error) {
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
healthzBindAddress: ""
metricsBindAddress: ""
# The host's conntrack settings stay as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, kubeconfig, o.subnet, o.node)
	path := filepath.Join(o.dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	args := []string{"--config=" + path}
	if o.featureGates != "" {
		args = append(args, "--feature-gates="+o.featureGates)
	}
	return args, nil
}

// splitGates turns "A=true,B=false" into pairs.
func splitGates(gates string) [][2]string {
	var out [][2]string
	for _, g := range strings.Split(gates, ",") {
		name, value, _ := strings.Cut(g, "=")
		out = append(out, [2]string{name, value})
	}
	return out
}

// writeClientKubeconfig writes a kubeconfig with a client certificate, for a component.
func writeClientKubeconfig(path, server, ca, cert, key string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca}
	cfg.AuthInfos["local"] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "local"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}
