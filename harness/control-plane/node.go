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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ClusterInfo is `cluster up`'s ready line and DIR/cluster.json: where everything is.
type ClusterInfo struct {
	Info
	Node         string          `json:"node"`
	NodeIP       string          `json:"nodeIP"`
	PodSubnet    string          `json:"podSubnet"`
	Containerd   string          `json:"containerd"`
	Images       []string        `json:"images"`
	NodeVersions ClusterVersions `json:"nodeVersions"`
}

// ClusterVersions are the node's components: Kubernetes' from this binary's module, the
// runtime's from the host's packages.
type ClusterVersions struct {
	Kubelet    string `json:"kubelet"`
	Containerd string `json:"containerd"`
	Runc       string `json:"runc"`
	CNIPlugins string `json:"cniPlugins"`
	Cgroups    string `json:"cgroups"`
}

// nodeOptions are `cluster up`'s choices.
type nodeOptions struct {
	dir, node, bridge string
	subnet            *net.IPNet
	gateway           net.IP
	images            []string
	featureGates      string
	timeout           time.Duration
	// kubeletBin, when set, is another build of this program whose `kubelet` command runs the
	// node's kubelet: a kubelet older than the control plane (version skew).
	kubeletBin string
}

func cluster(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: cluster up|down --dir DIR")
	}
	switch args[0] {
	case "up":
		return clusterUp(args[1:])
	case "down":
		fs := flag.NewFlagSet("cluster down", flag.ContinueOnError)
		dir := fs.String("dir", "", "the directory `cluster up` used (required)")
		bridge := fs.String("bridge", defaultBridge, "the Pod network's bridge")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("down: --dir is required")
		}
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return err
		}
		lock, err := lockNode(abs)
		if err != nil {
			return err
		}
		defer lock.Close()
		return teardown(abs, *bridge, nil)
	default:
		return fmt.Errorf("unknown cluster command %q: up or down", args[0])
	}
}

const (
	defaultBridge = "swbr0"
	// The Pod network: a /24 on a bridge of this machine, routed nowhere else (the Pods get a
	// route to it and to the Service range, no default route).
	defaultPodSubnet = "10.209.0.0/24"
	serviceSubnet    = "10.0.0.0/24"
)

// nodeLockPath is locked by the one cluster a machine runs: kube-proxy's iptables chains, the
// kubepods cgroups and the Pod network's routes are the host's, so a second `cluster up` (or a
// `down`) would tear down the running one's on its way in.
const nodeLockPath = "/run/sidecar-watch-node.lock"

// lockNode takes the machine's node lock for this process's lifetime, or names the cluster
// holding it.
func lockNode(dir string) (*os.File, error) {
	f, err := os.OpenFile(nodeLockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("step 'node lock': %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(nodeLockPath)
		_ = f.Close()
		return nil, fmt.Errorf("a cluster is already running on this machine (%s): one node per machine, since it shares the host's iptables chains, cgroups and routes; stop that one first (Ctrl-C, or kill its process)",
			strings.TrimSpace(string(holder)))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d, --dir %s", os.Getpid(), dir)
	}
	return f, nil
}

func clusterUp(args []string) error {
	fs := flag.NewFlagSet("cluster up", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for certificates, etcd, containerd and kubelet state, logs and the kubeconfig (required)")
	node := fs.String("node-name", "sidecar-watch-node", "the Node's name")
	bridge := fs.String("bridge", defaultBridge, "the Pod network's bridge (made and removed here)")
	subnet := fs.String("pod-subnet", defaultPodSubnet, "the Pod network (its first address is the node's)")
	featureGates := fs.String("feature-gates", "", "--feature-gates for every component, e.g. ContainerRestartRules=true")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long the cluster may take to become ready")
	exitWithStdin := fs.Bool("exit-with-stdin", false, "stop when standard input closes (the parent ended)")
	keep := fs.Bool("keep-dir", false, "keep --dir when stopping (logs, etcd data); the node's mounts are removed anyway")
	kubeletBin := fs.String("kubelet-bin", "", "another build of sidecar-watch-control-plane (build.sh --kubernetes-version) whose kubelet runs the node, e.g. a v1.34 kubelet under this control plane")
	var images repeated
	fs.Var(&images, "image", "a docker-archive tarball to import into containerd (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("up: --dir is required")
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *kubeletBin != "" {
		if *kubeletBin, err = filepath.Abs(*kubeletBin); err != nil {
			return err
		}
		if _, err := os.Stat(*kubeletBin); err != nil {
			return fmt.Errorf("--kubelet-bin: %w (build it with harness/control-plane/build.sh --kubernetes-version VERSION)", err)
		}
	}
	_, ipnet, err := net.ParseCIDR(*subnet)
	if err != nil {
		return fmt.Errorf("--pod-subnet %q: %w", *subnet, err)
	}
	gateway := make(net.IP, len(ipnet.IP.To4()))
	copy(gateway, ipnet.IP.To4())
	gateway[3]++
	o := nodeOptions{dir: absDir, node: *node, bridge: *bridge, subnet: ipnet, gateway: gateway,
		images: images, featureGates: *featureGates, timeout: *timeout, kubeletBin: *kubeletBin}
	if err := preflight(); err != nil {
		return err
	}
	lock, err := lockNode(absDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	// What an earlier run left (it was killed before its teardown) goes first.
	if err := teardown(absDir, o.bridge, nil); err != nil {
		return fmt.Errorf("step 'clean up an earlier run': %w", err)
	}
	var c clusterProcesses
	defer func() {
		if err := teardown(absDir, o.bridge, &c); err != nil {
			fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane cluster: teardown: %v\n", err)
		}
		if !*keep {
			_ = os.RemoveAll(absDir)
		}
	}()
	info, err := startCluster(ctx, o, &c)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(absDir, "cluster.json"), line, 0o644); err != nil {
		return fmt.Errorf("step 'info': %w", err)
	}
	control, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("step 'control API': %w", err)
	}
	info.Control = "http://" + control.Addr().String()
	line, _ = json.Marshal(info)
	go func() { _ = http.Serve(control, controlAPI(ctx, info, c.etcd, c.controlled())) }()
	fmt.Printf("ready %s\n", line)
	fmt.Fprintf(os.Stderr, "Node %s Ready: kubelet %s, containerd %s, runc %s, CNI plugins %s (%s); kube-apiserver on %s; kubeconfig %s\n",
		info.Node, info.NodeVersions.Kubelet, info.NodeVersions.Containerd, info.NodeVersions.Runc, info.NodeVersions.CNIPlugins, info.NodeVersions.Cgroups,
		info.Server, info.Kubeconfig)
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

// clusterProcesses are what `cluster up` started, stopped in reverse by teardown.
type clusterProcesses struct {
	etcd                                                     *Etcd
	apiserver                                                *APIServer
	containerd, controllerManager, scheduler, proxy, kubelet *Process
}

func (c *clusterProcesses) controlled() map[string]controlled {
	// The node's services restart as a service manager restarts them (SIGTERM, then SIGKILL
	// after 10 s); kube-apiserver is killed, as in `up`.
	return map[string]controlled{
		"apiserver":               {c.apiserver.Process, 0},
		"containerd":              {c.containerd, 10 * time.Second},
		"kube-controller-manager": {c.controllerManager, 10 * time.Second},
		"kube-scheduler":          {c.scheduler, 10 * time.Second},
		"kube-proxy":              {c.proxy, 10 * time.Second},
		"kubelet":                 {c.kubelet, 10 * time.Second},
	}
}

func startCluster(ctx context.Context, o nodeOptions, c *clusterProcesses) (ClusterInfo, error) {
	var info ClusterInfo
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return info, fmt.Errorf("step 'directory': %w", err)
	}
	if err := makeBridge(o.bridge, o.gateway, o.subnet); err != nil {
		return info, fmt.Errorf("step 'Pod network': %w", err)
	}
	pki, err := makePKI(filepath.Join(o.dir, "pki"), o.gateway)
	if err != nil {
		return info, fmt.Errorf("step 'certificates': %w", err)
	}
	ports, err := choosePorts(map[string]int{"kube-apiserver": 0, "etcd": 0, "etcd peer": 0})
	if err != nil {
		return info, fmt.Errorf("step 'ports': %w", err)
	}
	if c.etcd, err = startEtcd(o.dir, ports["etcd"], ports["etcd peer"], o.timeout); err != nil {
		return info, fmt.Errorf("step 'etcd': %w", err)
	}
	flags := nodeAPIServerFlags(apiServerFlags(pki, c.etcd.URL, ports["kube-apiserver"], o.featureGates, "", nil), o.gateway)
	c.apiserver, err = newAPIServer(pki, flags, o.gateway.String(), ports["kube-apiserver"], filepath.Join(o.dir, "kube-apiserver.log"), o.timeout)
	if err != nil {
		return info, fmt.Errorf("step 'kube-apiserver': %w", err)
	}
	if err := c.apiserver.Start(ctx); err != nil {
		return info, fmt.Errorf("step 'kube-apiserver': %w", err)
	}
	kubeconfig := filepath.Join(o.dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.apiserver.URL(), pki); err != nil {
		return info, fmt.Errorf("step 'kubeconfig': %w", err)
	}
	// Each component authenticates as kubeadm's do, so the bootstrap RBAC policy (and the
	// Node authorizer for the kubelet) decides what it may do.
	users := map[string]*struct{ cn, group string }{
		"kube-controller-manager": {"system:kube-controller-manager", ""},
		"kube-scheduler":          {"system:kube-scheduler", ""},
		"kube-proxy":              {"system:kube-proxy", ""},
		"kubelet":                 {"system:node:" + o.node, "system:nodes"},
	}
	configs := map[string]string{}
	for name, u := range users {
		cert, key := filepath.Join(o.dir, "pki", name+".crt"), filepath.Join(o.dir, "pki", name+".key")
		groups := []string{}
		if u.group != "" {
			groups = append(groups, u.group)
		}
		if err := pki.issue(cert, key, clientCert(u.cn, groups...)); err != nil {
			return info, fmt.Errorf("step 'certificates': %s: %w", name, err)
		}
		configs[name] = filepath.Join(o.dir, name+".kubeconfig")
		if err := writeClientKubeconfig(configs[name], c.apiserver.URL(), pki.CACert, cert, key); err != nil {
			return info, fmt.Errorf("step 'kubeconfig': %s: %w", name, err)
		}
	}
	if c.containerd, err = startContainerd(ctx, o); err != nil {
		return info, fmt.Errorf("step 'containerd': %w", err)
	}
	if err := importImages(o); err != nil {
		return info, fmt.Errorf("step 'images': %w", err)
	}
	kubeletArgs, err := kubeletFlags(o, pki, configs["kubelet"])
	if err != nil {
		return info, fmt.Errorf("step 'kubelet': %w", err)
	}
	proxyArgs, err := proxyFlags(o, configs["kube-proxy"])
	if err != nil {
		return info, fmt.Errorf("step 'kube-proxy': %w", err)
	}
	for _, comp := range []struct {
		target **Process
		name   string
		args   []string
	}{
		{&c.controllerManager, "kube-controller-manager", controllerManagerFlags(o, pki, configs["kube-controller-manager"])},
		{&c.scheduler, "kube-scheduler", schedulerFlags(o, configs["kube-scheduler"])},
		{&c.proxy, "kube-proxy", proxyArgs},
		{&c.kubelet, "kubelet", kubeletArgs},
	} {
		p, err := newComponent(comp.name, comp.args, filepath.Join(o.dir, comp.name+".log"), o.timeout)
		if err != nil {
			return info, fmt.Errorf("step '%s': %w", comp.name, err)
		}
		if comp.name == "kubelet" && o.kubeletBin != "" {
			p.path = o.kubeletBin
		}
		// Their health ports are off; one that refuses its flags exits within a second.
		p.ready = aliveFor(2 * time.Second)
		if err := p.Start(ctx); err != nil {
			return info, fmt.Errorf("step '%s': %w", comp.name, err)
		}
		*comp.target = p
	}
	if err := waitNodeReady(ctx, kubeconfig, o); err != nil {
		return info, fmt.Errorf("step 'Node Ready': %w", err)
	}
	info = ClusterInfo{
		Info: Info{Kubeconfig: kubeconfig, Server: c.apiserver.URL(), Etcd: c.etcd.URL, Dir: o.dir,
			PID: os.Getpid(), Versions: versions()},
		Node: o.node, NodeIP: o.gateway.String(), PodSubnet: o.subnet.String(),
		Containerd: containerdSocket(o.dir), Images: o.images, NodeVersions: nodeVersions(o.kubeletBin),
	}
	return info, nil
}

// nodeAPIServerFlags turns the control plane's flags into a node's: served on the node's
// address (where Pods reach it through the `kubernetes` Service), the Node authorizer and
// NodeRestriction for the kubelet, the ServiceAccount admission plugin (the controller-manager
// makes the `default` accounts), and a client certificate for calls to the kubelet.
func nodeAPIServerFlags(flags []string, gateway net.IP) []string {
	drop := map[string]bool{
		"--bind-address": true, "--advertise-address": true, "--authorization-mode": true,
		"--disable-admission-plugins": true, "--endpoint-reconciler-type": true,
	}
	var out []string
	for _, f := range flags {
		name, _, _ := strings.Cut(f, "=")
		if !drop[name] {
			out = append(out, f)
		}
	}
	pki := ""
	for _, f := range flags {
		if name, value, _ := strings.Cut(f, "="); name == "--client-ca-file" {
			pki = filepath.Dir(value)
		}
	}
	return append(out,
		"--bind-address="+gateway.String(),
		"--advertise-address="+gateway.String(),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate="+filepath.Join(pki, "admin.crt"),
		"--kubelet-client-key="+filepath.Join(pki, "admin.key"),
		"--kubelet-preferred-address-types=InternalIP",
	)
}

func controllerManagerFlags(o nodeOptions, pki PKI, kubeconfig string) []string {
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--root-ca-file=" + pki.CACert,
		"--service-account-private-key-file=" + pki.ServiceAccountKey,
		"--service-cluster-ip-range=" + serviceSubnet,
		"--cluster-cidr=" + o.subnet.String(),
		"--use-service-account-credentials=true",
		// A Node that stops reporting is NotReady after 20 s (the default is 50 s), so the
		// node-fault tests need not wait as long.
		"--node-monitor-grace-period=20s",
	}
	if o.featureGates != "" {
		args = append(args, "--feature-gates="+o.featureGates)
	}
	return args
}

func schedulerFlags(o nodeOptions, kubeconfig string) []string {
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
	}
	if o.featureGates != "" {
		args = append(args, "--feature-gates="+o.featureGates)
	}
	return args
}

// aliveFor is a ready check that passes once the process has run for d.
func aliveFor(d time.Duration) func(context.Context) error {
	var since time.Time
	return func(context.Context) error {
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < d {
			return errors.New("just started")
		}
		since = time.Time{}
		return nil
	}
}

// waitNodeReady waits until the Node reports Ready and the controller-manager has made the
// `default` ServiceAccount and the root CA ConfigMap every Pod's token volume needs.
func waitNodeReady(ctx context.Context, kubeconfig string, o nodeOptions) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.timeout)
	last := "no Node yet"
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = nodeReadiness(ctx, client, o.node)
		if last == "" {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s: %s; last lines of %s:\n%s", o.timeout, last,
		filepath.Join(o.dir, "kubelet.log"), tail(filepath.Join(o.dir, "kubelet.log"), 15))
}

// nodeReadiness says what the cluster still lacks, or "" once it is ready.
func nodeReadiness(ctx context.Context, client *kubernetes.Clientset, node string) string {
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("Node %s: %v", node, err)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
			if !ready {
				return fmt.Sprintf("Node %s Ready=%s: %s", node, c.Status, c.Message)
			}
		}
	}
	if !ready {
		return fmt.Sprintf("Node %s has no Ready condition yet", node)
	}
	if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Sprintf("ServiceAccount default/default: %v", err)
	}
	if _, err := client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
		return fmt.Sprintf("ConfigMap default/kube-root-ca.crt: %v", err)
	}
	return ""
}
