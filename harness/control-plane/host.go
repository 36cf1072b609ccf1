package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// preflight says, in one message, everything this machine lacks to run a node.
func preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet, containerd and the Pod network need it: run as root, or with sudo)")
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			missing = append(missing, "CNI plugin "+filepath.Join(cniBinDir, plugin))
		}
	}
	if len(missing) > 0 {
		missing = append(missing, "(scripts/cluster installs them: apt-get install containerd runc containernetworking-plugins iptables iproute2)")
	}
	if _, err := cgroupMode(); err != nil {
		missing = append(missing, err.Error())
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "overlay") {
		missing = append(missing, "the overlay filesystem (containerd's snapshotter): a kernel with overlayfs")
	}
	if len(missing) > 0 {
		return fmt.Errorf("this machine cannot run a node; missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// cgroupMode is "v2" or "v1", or an error naming the controllers the kubelet needs.
func cgroupMode() (string, error) {
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		for _, c := range []string{"cpu", "memory", "pids"} {
			if !strings.Contains(string(data), c) {
				return "", fmt.Errorf("the cgroup v2 controller %q (enable it in the root's cgroup.subtree_control)", c)
			}
		}
		return "v2", nil
	}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "cpuset"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err != nil {
			return "", fmt.Errorf("cgroups: neither cgroup v2 at /sys/fs/cgroup nor the v1 hierarchy %q", c)
		}
	}
	return "v1", nil
}

// makeBridge makes the Pod network's bridge with the node's address before anything starts:
// kube-apiserver serves on that address, where the Pods reach it. The CNI bridge plugin finds
// it there and plugs each Pod's veth into it.
func makeBridge(name string, gateway net.IP, subnet *net.IPNet) error {
	ones, _ := subnet.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", gateway, ones), "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// teardown removes what a node left, whether `cluster up` stops normally (c holds its
// processes) or died before (c is nil): the Pods (through the CRI, so their networks are
// torn down), containerd and its shims, the kubelet's cgroups, every mount under dir,
// kube-proxy's iptables rules and the bridge. Each step runs whatever an earlier one did.
func teardown(dir, bridge string, c *clusterProcesses) error {
	var errs []error
	stop := func(p *Process) {
		if p != nil && p.Running() {
			_ = p.Stop(5 * time.Second)
		}
	}
	if c != nil {
		// The kubelet first, so that nothing starts containers again.
		stop(c.kubelet)
		stop(c.proxy)
		stop(c.scheduler)
		stop(c.controllerManager)
	}
	config := filepath.Join(containerdDir(dir), "config.toml")
	if _, err := os.Stat(config); err == nil {
		containerd := c.containerdOrNil()
		if containerd == nil || !containerd.Running() {
			// An earlier run's containerd died with it: start one on the same state to remove
			// its Pods properly.
			containerd = &Process{name: "containerd (teardown)", path: "containerd", args: []string{"--config", config},
				logPath: filepath.Join(dir, "containerd.log"), timeout: 30 * time.Second}
			containerd.ready = func(ctx context.Context) error { return criReady(ctx, containerdSocket(dir)) }
			if err := containerd.Start(context.Background()); err != nil {
				errs = append(errs, err)
				containerd = nil
			}
		}
		if containerd != nil {
			if err := removeSandboxes(containerdSocket(dir)); err != nil {
				errs = append(errs, fmt.Errorf("removing Pods: %w", err))
			}
			stop(containerd)
		}
	}
	killShims(containerdSocket(dir))
	if err := removeCgroups("kubepods"); err != nil {
		errs = append(errs, err)
	}
	if c != nil {
		if c.apiserver != nil && c.apiserver.Running() {
			_ = c.apiserver.Stop(0)
		}
		if c.etcd != nil {
			c.etcd.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-proxy.yaml")); err == nil {
		self, _ := os.Executable()
		if out, err := exec.Command(self, "kube-proxy", "--cleanup").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("kube-proxy --cleanup: %v: %s", err, lastLines(string(out))))
		}
	}
	// The kubelet's canary chains (it makes them to notice a firewall reload).
	for _, table := range []string{"mangle", "nat", "filter"} {
		for _, verb := range []string{"-F", "-X"} {
			_ = exec.Command("iptables", "-w", "-t", table, verb, "KUBE-KUBELET-CANARY").Run()
		}
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := net.InterfaceByName(bridge); err == nil {
		if out, err := exec.Command("ip", "link", "delete", bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", bridge, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

func (c *clusterProcesses) containerdOrNil() *Process {
	if c == nil {
		return nil
	}
	return c.containerd
}

// killShims kills the containerd shims (and so their containers) serving socket: a shim
// outlives containerd by design.
func killShims(socket string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && strings.Contains(string(cmdline), socket) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCgroups kills what is left in the kubelet's cgroups (cgroupfs: /kubepods in each
// hierarchy) and removes them, deepest first.
func removeCgroups(name string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if _, err := os.Stat("/sys/fs/cgroup/" + name); err == nil {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	var dirs []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	for _, d := range dirs {
		if procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, line := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(line); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var failed []string
	for _, d := range dirs {
		removed := false
		for try := 0; try < 20 && !removed; try++ {
			if err := syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				removed = true
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if !removed {
			failed = append(failed, d)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cgroups still in use: %s", strings.Join(failed, ", "))
	}
	return nil
}

// unmountUnder detaches every mount below dir (overlay snapshots, Pod volumes, sandbox shm),
// deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) > 4 && strings.HasPrefix(unescapeMount(fields[4]), dir+"/") {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var failed []string
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			failed = append(failed, fmt.Sprintf("%s (%v)", p, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cannot unmount: %s", strings.Join(failed, ", "))
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (a space is \040).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// nodeVersions asks the host's packages for theirs, and kubeletBin (when set) for its
// Kubernetes module.
func nodeVersions(kubeletBin string) ClusterVersions {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	mode, _ := cgroupMode()
	kubelet := versions().KubernetesModule
	if kubeletBin != "" {
		kubelet = "unknown"
		var v Versions
		if out, err := exec.Command(kubeletBin, "version").Output(); err == nil && json.Unmarshal(out, &v) == nil {
			kubelet = v.KubernetesModule
		}
	}
	return ClusterVersions{
		Kubelet:    kubelet,
		Containerd: first("containerd", "--version"),
		Runc:       first("runc", "--version"),
		CNIPlugins: first(filepath.Join(cniBinDir, "bridge"), "--version"),
		Cgroups:    mode,
	}
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 2 {
		lines = lines[len(lines)-2:]
	}
	return strings.Join(lines, " / ")
}
