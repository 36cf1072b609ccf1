//go:build !kube_1_29 && !kube_1_30

package main

import "google.golang.org/grpc"

// newGRPCClient is grpc.NewClient (gRPC 1.63 and later; 1.29 and 1.30 pin older ones).
func newGRPCClient(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(target, opts...)
}
