package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniBinDir is where Debian's containernetworking-plugins installs the plugins.
const cniBinDir = "/usr/lib/cni"

// PauseImage is the sandbox image containerd runs for each Pod: built locally (no registry),
// from the same static busybox as the test image (scripts/cluster, harness/node/images.sh).
const PauseImage = "sidecar-watch.test/pause:1"

func containerdDir(dir string) string    { return filepath.Join(dir, "containerd") }
func containerdSocket(dir string) string { return filepath.Join(containerdDir(dir), "containerd.sock") }

// startContainerd writes a containerd of the node's own (its root, state, socket and CNI
// configuration under DIR, so nothing of the host's containerd is touched) and starts it.
func startContainerd(ctx context.Context, o nodeOptions) (*Process, error) {
	cdir := containerdDir(o.dir)
	netDir := filepath.Join(o.dir, "cni", "net.d")
	for _, d := range []string{cdir, netDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// No default route: a Pod reaches the Pods beside it, the node's address and the Service
	// range, and nothing else.
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "sidecar-watch",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": %q,
             "ranges": [[{"subnet": %q, "gateway": %q}]],
             "routes": [{"dst": %q}]}
  }]
}
`, o.bridge, filepath.Join(o.dir, "cni", "ipam"), o.subnet, o.gateway, serviceSubnet)
	if err := os.WriteFile(filepath.Join(netDir, "10-sidecar-watch.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # No lower oom_score_adj than containerd's own: the kubelet asks -998 for sandboxes and -997
  # for Guaranteed Pods, which needs CAP_SYS_RESOURCE, and a VM's root may lack it (this one
  # does: runc then fails with "can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(cdir, "root"), filepath.Join(cdir, "state"), containerdSocket(o.dir),
		containerdSocket(o.dir)+".ttrpc", PauseImage, cniBinDir, netDir)
	configPath := filepath.Join(cdir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	p := &Process{name: "containerd", path: "containerd", args: []string{"--config", configPath},
		logPath: filepath.Join(o.dir, "containerd.log"), timeout: o.timeout}
	p.ready = func(ctx context.Context) error { return criReady(ctx, containerdSocket(o.dir)) }
	return p, p.Start(ctx)
}

// criReady asks containerd's CRI plugin for its status.
func criReady(ctx context.Context, socket string) error {
	client, closeConn, err := criClient(socket)
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = client.Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

func criClient(socket string) (runtimeapi.RuntimeServiceClient, func(), error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, nil, err
	}
	conn, err := newGRPCClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		return nil, nil, err
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }, nil
}

// removeSandboxes stops and removes every Pod sandbox through the CRI, as the kubelet would:
// containers stopped, network torn down (veth, IP released), mounts removed.
func removeSandboxes(socket string) error {
	client, closeConn, err := criClient(socket)
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []string
	for _, s := range list.Items {
		if _, err := client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("stop %s: %v", s.Metadata.GetName(), err))
		}
		if _, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("remove %s: %v", s.Metadata.GetName(), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// importImages imports each docker-archive tarball into the CRI's namespace (k8s.io) and
// unpacks it for the CRI's snapshotter, as `ctr images import` does.
func importImages(o nodeOptions) error {
	for _, image := range o.images {
		out, err := exec.Command("ctr", "--address", containerdSocket(o.dir), "--namespace", "k8s.io",
			"images", "import", "--snapshotter", "overlayfs", image).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v: %s", image, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
