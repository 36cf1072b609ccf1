//go:build !kube_1_29 && !kube_1_30 && !kube_1_31 && !kube_1_32 && !kube_1_33

package main

import (
	"context"

	"github.com/spf13/cobra"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// newKubeletCommand is the kubelet's command (1.34 and later take a context).
func newKubeletCommand() *cobra.Command {
	return kubelet.NewKubeletCommand(context.Background())
}
