//go:build kube_1_30 || kube_1_31 || kube_1_32 || kube_1_33 || kube_1_34

package main

import (
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"
)

// baseEnvSet is kube-apiserver's CEL environment at compatibility version ver, with strict
// cost enforcement as a ValidatingAdmissionPolicy gets it (1.30 to 1.34 take it as an
// argument; 1.29 has neither this nor cel-cost, see celcost_unsupported.go).
func baseEnvSet(ver *version.Version) *environment.EnvSet {
	return environment.MustBaseEnvSet(ver, true)
}
