// Command sidecar-watch-control-plane runs a real Kubernetes cluster for the tests of
// sidecar-watch, from the pinned k8s.io/kubernetes module: either a control plane alone
// (etcd embedded from go.etcd.io/etcd/server/v3 and kube-apiserver, on loopback, with what
// envtest gives a controller author: certificates made at start, an admin kubeconfig, RBAC
// and service-account token signing), or a whole single-node cluster (that control plane
// plus kube-controller-manager, kube-scheduler, kube-proxy, containerd and a kubelet, with
// a Pod network of its own; node.go). It also measures what a ValidatingAdmissionPolicy costs
// kube-apiserver's CEL library on one object (cel-cost, celcost.go), in-process.
//
//	sidecar-watch-control-plane up --dir DIR [--feature-gates G] [--runtime-config R]
//	sidecar-watch-control-plane cluster up --dir DIR [--image TARBALL]...
//	sidecar-watch-control-plane cluster down --dir DIR
//	sidecar-watch-control-plane cel-cost -policy FILE -object FILE [-params FILE] [-namespace-labels k=v,...]
//	sidecar-watch-control-plane cel-messages -policy FILE -cases FILE [-params FILE]
//	sidecar-watch-control-plane version
//
// `up` and `cluster up` print one line `ready {json}` on standard output once the cluster is
// ready, then serve a control API on loopback (see control.go) until SIGINT/SIGTERM or, with
// --exit-with-stdin, until their standard input closes (the test process ended). Each
// Kubernetes component runs in a child process of this same binary (the commands below), as
// hyperkube once did, so that a test can kill and start it again.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// components are the Kubernetes commands this binary runs as its own children.
var components = map[string]func() *cobra.Command{
	"apiserver":               apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 newKubeletCommand,
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "up":
		if err := up(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane: %v\n", err)
			os.Exit(1)
		}
	case "cluster":
		if err := cluster(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane cluster: %v\n", err)
			os.Exit(1)
		}
	case "cel-cost":
		if err := celCost(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane cel-cost: %v\n", err)
			os.Exit(2)
		}
	case "cel-messages":
		if err := celMessages(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane cel-messages: %v\n", err)
			os.Exit(2)
		}
	case "version":
		out, _ := json.MarshalIndent(versions(), "", "  ")
		fmt.Println(string(out))
	default:
		// A child process: the component's own command with the flags its parent chose.
		newCommand, ok := components[os.Args[1]]
		if !ok {
			usage()
		}
		args := os.Args[2:]
		if os.Args[1] == "kubelet" {
			var err error
			if args, err = pointCadvisorAtContainerd(args); err != nil {
				fmt.Fprintf(os.Stderr, "sidecar-watch-control-plane kubelet: %v\n", err)
				os.Exit(2)
			}
		}
		cmd := newCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sidecar-watch-control-plane up --dir DIR [flags] | cluster up|down --dir DIR [flags] |\n"+
		"  cel-cost -policy FILE -object FILE [flags] | cel-messages -policy FILE -cases FILE [flags] | version\n"+
		"  up --help, cluster up --help and cel-cost --help list the flags")
	os.Exit(2)
}
