// Command sidecar-watch-control-plane runs a real Kubernetes control plane for the tests of
// sidecar-watch: etcd (embedded, from go.etcd.io/etcd/server/v3) and kube-apiserver (from
// k8s.io/kubernetes, in a child process of this same binary) on loopback, with what envtest
// gives a controller author: serving and client certificates made at start, an admin
// kubeconfig, RBAC authorization and service-account token signing.
//
//	sidecar-watch-control-plane up --dir DIR [--feature-gates G] [--runtime-config R]
//	sidecar-watch-control-plane version
//
// `up` prints one line `ready {json}` on standard output once kube-apiserver answers
// /readyz, then serves a control API on loopback (see control.go) until SIGINT/SIGTERM or,
// with --exit-with-stdin, until its standard input closes (the test process ended).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

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
	case "apiserver":
		// The child process: kube-apiserver's own command with the flags `up` chose.
		cmd := app.NewAPIServerCommand()
		cmd.SetArgs(os.Args[2:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
	case "version":
		out, _ := json.MarshalIndent(versions(), "", "  ")
		fmt.Println(string(out))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sidecar-watch-control-plane up --dir DIR [flags] | version\n"+
		"  up --help lists the flags")
	os.Exit(2)
}
