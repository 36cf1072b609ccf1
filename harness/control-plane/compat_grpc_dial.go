//go:build kube_1_29 || kube_1_30

package main

import "google.golang.org/grpc"

// newGRPCClient is grpc.Dial for the gRPC releases Kubernetes 1.29 and 1.30 pin, which have no
// grpc.NewClient; like NewClient it connects lazily.
func newGRPCClient(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.Dial(target, opts...)
}
