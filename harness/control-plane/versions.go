package main

import (
	"runtime"
	"runtime/debug"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	kubeversion "k8s.io/component-base/version"
)

// Versions are what the control plane runs, printed by `version` and in `up`'s ready line.
type Versions struct {
	KubeAPIServer string `json:"kubeAPIServer"`
	Etcd          string `json:"etcd"`
	Go            string `json:"go"`
	// KubernetesModule is the k8s.io/kubernetes module version this binary was built from;
	// KubeAPIServer equals it when the build stamped it (build.sh does).
	KubernetesModule string `json:"kubernetesModule"`
}

func versions() Versions {
	v := Versions{
		KubeAPIServer: kubeversion.Get().GitVersion,
		Etcd:          etcdversion.Version,
		Go:            runtime.Version(),
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "k8s.io/kubernetes" {
				v.KubernetesModule = dep.Version
			}
		}
	}
	return v
}
