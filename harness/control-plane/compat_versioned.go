//go:build !kube_1_29 && !kube_1_30 && !kube_1_31 && !kube_1_32 && !kube_1_33 && !kube_1_34 && !kube_1_35 && !kube_1_36

package main

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// versionedAttributes are the attributes a policy sees, the object already in its kind.
func versionedAttributes(attributes admission.Attributes, gvk schema.GroupVersionKind, object runtime.Object) *admission.VersionedAttributes {
	return &admission.VersionedAttributes{Attributes: attributes, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(object)}
}
