//go:build kube_1_29 || kube_1_30

package main

import "fmt"

// celCost is not built against Kubernetes 1.29 and 1.30: their CEL admission library lacks
// what celcost.go uses (ConditionEvaluator, CompileCondition, version.ParseMajorMinor).
func celCost(args []string) error {
	return fmt.Errorf("cel-cost is not built into this control plane (Kubernetes 1.29 and 1.30 lack the CEL admission API it uses); use a 1.31 or later build")
}

// celMessages is not built there either, for the same reason.
func celMessages(args []string) error {
	return fmt.Errorf("cel-messages is not built into this control plane (Kubernetes 1.29 and 1.30 lack the CEL admission API it uses); use a 1.31 or later build")
}
