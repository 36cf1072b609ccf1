//go:build kube_1_29 || kube_1_30 || kube_1_31 || kube_1_32 || kube_1_33

package main

import (
	"github.com/spf13/cobra"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// newKubeletCommand is the kubelet's command (before 1.34 it takes no context).
func newKubeletCommand() *cobra.Command {
	return kubelet.NewKubeletCommand()
}
