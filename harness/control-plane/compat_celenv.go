//go:build !kube_1_29 && !kube_1_30 && !kube_1_31 && !kube_1_32 && !kube_1_33 && !kube_1_34

package main

import (
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"
)

// baseEnvSet is kube-apiserver's CEL environment at compatibility version ver (1.35 and
// later: strict cost enforcement is no longer a choice).
func baseEnvSet(ver *version.Version) *environment.EnvSet {
	return environment.MustBaseEnvSet(ver)
}
