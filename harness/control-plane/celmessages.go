//go:build !kube_1_29 && !kube_1_30

// The cel-messages command evaluates a ValidatingAdmissionPolicy on many objects, each created
// in a namespace of given labels and annotations, the way kube-apiserver does, and prints the
// messages of each: what `kubectl create` would print as warnings. The policy is compiled once
// (cel-cost compiles it once per variable to price each), so hundreds of cases take seconds.
//
//	sidecar-watch-control-plane cel-messages -policy policy.yaml -cases cases.json [-params cscp.yaml]
//
// cases.json is a JSON array of {"object": {...}, "namespaceLabels": {...},
// "namespaceAnnotations": {...}}; the output is a JSON array of {"messages": [...],
// "errors": [...]}, one per case, in order.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

// messagesCase is one object to admit and its namespace.
type messagesCase struct {
	Object               map[string]interface{} `json:"object"`
	NamespaceLabels      map[string]string      `json:"namespaceLabels"`
	NamespaceAnnotations map[string]string      `json:"namespaceAnnotations"`
}

// messagesResult is what the policy says of one case.
type messagesResult struct {
	Messages []string `json:"messages"`
	Errors   []string `json:"errors"`
}

// celMessages is the cel-messages command.
func celMessages(args []string) error {
	fs := flag.NewFlagSet("cel-messages", flag.ContinueOnError)
	policyFile := fs.String("policy", "", "YAML with the ValidatingAdmissionPolicy (other documents are skipped)")
	casesFile := fs.String("cases", "", "JSON array of {object, namespaceLabels, namespaceAnnotations}")
	paramsFile := fs.String("params", "", "the param object (a ClusterSidecarPolicy), if the binding names one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *policyFile == "" || *casesFile == "" {
		return errors.New("usage: cel-messages -policy FILE -cases FILE [-params FILE]")
	}
	policy, err := readPolicy(*policyFile)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*casesFile)
	if err != nil {
		return err
	}
	var cases []messagesCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		return fmt.Errorf("%s: %w", *casesFile, err)
	}
	params, err := readParams(*paramsFile)
	if err != nil {
		return err
	}
	bindings := plugincel.OptionalVariableBindings{VersionedParams: params}
	env := baseEnvSet(environment.DefaultCompatibilityVersion())
	validations, messages, problems, err := compilePolicy(env, environment.StoredExpressions, policy, nil)
	if err != nil {
		return err
	}
	results := make([]messagesResult, 0, len(cases))
	for _, c := range cases {
		result := messagesResult{Errors: append([]string{}, problems...)}
		object := &unstructured.Unstructured{Object: c.Object}
		versioned, request, namespaceObject := admissionInput(object, c.NamespaceLabels, c.NamespaceAnnotations)
		result.Messages, _ = failedMessages(context.Background(), validations, messages, policy, versioned, request,
			bindings, namespaceObject, celconfig.RuntimeCELCostBudget, &result.Errors)
		results = append(results, result)
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}
