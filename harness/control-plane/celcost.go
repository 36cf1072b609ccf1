//go:build !kube_1_29 && !kube_1_30

// The cel-cost command evaluates a ValidatingAdmissionPolicy on one object the way
// kube-apiserver does (k8s.io/apiserver's CEL admission library, the same module as the API
// server this binary runs, with its cost limits) and prints, as JSON, the runtime cost of each
// variable and validation, the total against the API server's budget, the messages, and
// whether every expression also compiles with the CEL library of an older Kubernetes
// (-compat, default 1.30: the first release of admissionregistration.k8s.io/v1 policies).
//
//	sidecar-watch-control-plane cel-cost -policy policy.yaml -object pod.json [-params cscp.yaml] [-namespace-labels k=v,...]
//
// `up` says whether the API server admits or warns; this says how much of its budget that
// took, which the server does not report. It runs in-process: no control plane is started.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	celgo "github.com/google/cel-go/cel"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
)

// ExpressionCost is the cost of one expression, or why it has none.
type ExpressionCost struct {
	Name  string `json:"name"`
	Cost  int64  `json:"cost"`
	Error string `json:"error,omitempty"`
}

// CostReport is what cel-cost prints.
type CostReport struct {
	Budget        int64            `json:"budget"`
	PerCallLimit  int64            `json:"perCallLimit"`
	Variables     []ExpressionCost `json:"variables"`
	TotalCost     int64            `json:"totalCost"`
	Messages      []string         `json:"messages"`
	Errors        []string         `json:"errors"`
	CompatVersion string           `json:"compatVersion"`
	CompatErrors  []string         `json:"compatErrors"`
}

// celCost is the cel-cost command: the report on standard output, an error for a bad flag,
// an unreadable file or a policy that cannot be compiled at all.
func celCost(args []string) error {
	fs := flag.NewFlagSet("cel-cost", flag.ContinueOnError)
	policyFile := fs.String("policy", "", "YAML with the ValidatingAdmissionPolicy (other documents are skipped)")
	objectFile := fs.String("object", "", "the object admitted (YAML or JSON)")
	paramsFile := fs.String("params", "", "the param object (a ClusterSidecarPolicy), if the binding names one")
	namespaceLabels := fs.String("namespace-labels", "", "labels of the object's namespace, k=v,...")
	compat := fs.String("compat", "1.30", "also compile every expression with this Kubernetes version's CEL library")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *policyFile == "" || *objectFile == "" {
		return errors.New("usage: cel-cost -policy FILE -object FILE [-params FILE] [-namespace-labels k=v,...] [-compat 1.30]")
	}
	report, err := evaluatePolicy(*policyFile, *objectFile, *paramsFile, *namespaceLabels, *compat)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(report)
}

func readObjects(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	decoder := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objects []*unstructured.Unstructured
	for {
		var raw map[string]interface{}
		if err := decoder.Decode(&raw); err != nil {
			if err.Error() == "EOF" {
				return objects, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if raw != nil {
			objects = append(objects, &unstructured.Unstructured{Object: raw})
		}
	}
}

// readParams reads a binding's param object (a ClusterSidecarPolicy); nil without a file.
func readParams(path string) (runtime.Object, error) {
	if path == "" {
		return nil, nil
	}
	p, err := readObjects(path)
	if err != nil || len(p) != 1 {
		return nil, fmt.Errorf("%s: want one object (%v)", path, err)
	}
	return p[0], nil
}

func readPolicy(path string) (*admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	objects, err := readObjects(path)
	if err != nil {
		return nil, err
	}
	for _, o := range objects {
		if o.GetKind() == "ValidatingAdmissionPolicy" {
			var policy admissionregistrationv1.ValidatingAdmissionPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &policy); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return &policy, nil
		}
	}
	return nil, fmt.Errorf("%s: no ValidatingAdmissionPolicy", path)
}

var (
	celAnyType  = []*celgo.Type{celgo.AnyType}
	celBoolType = []*celgo.Type{celgo.BoolType}
)

type policyVariable struct {
	v admissionregistrationv1.Variable
}

func (v policyVariable) GetExpression() string { return v.v.Expression }
func (v policyVariable) GetName() string       { return v.v.Name }
func (v policyVariable) ReturnTypes() []*celgo.Type {
	return celAnyType
}

// policyCondition is an expression that must be a bool (validations), or any type (messages, probes).
type policyCondition struct {
	expression string
	anyType    bool
}

func (c policyCondition) GetExpression() string { return c.expression }
func (c policyCondition) ReturnTypes() []*celgo.Type {
	if c.anyType {
		return celAnyType
	}
	return celBoolType
}

// compilePolicy compiles the policy's variables, then `probes` (any type) when given, else its
// validations and their messages; it returns what does not compile.
func compilePolicy(env *environment.EnvSet, mode environment.Type, policy *admissionregistrationv1.ValidatingAdmissionPolicy, probes []string) (plugincel.ConditionEvaluator, plugincel.ConditionEvaluator, []string, error) {
	compiler, err := plugincel.NewCompositedCompiler(env)
	if err != nil {
		return nil, nil, nil, err
	}
	options := plugincel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	var problems []string
	for _, v := range policy.Spec.Variables {
		result := compiler.CompileAndStoreVariable(policyVariable{v}, options, mode)
		if result.Error != nil {
			problems = append(problems, fmt.Sprintf("variables.%s: %v", v.Name, result.Error))
		}
	}
	var conditions, messages []plugincel.ExpressionAccessor
	for _, p := range probes {
		conditions = append(conditions, policyCondition{expression: p, anyType: true})
	}
	if probes == nil {
		for _, v := range policy.Spec.Validations {
			conditions = append(conditions, policyCondition{expression: v.Expression})
			if v.MessageExpression == "" {
				// A placeholder, as in the API server: nothing evaluated, nothing spent.
				messages = append(messages, nil)
			} else {
				messages = append(messages, policyCondition{expression: v.MessageExpression, anyType: true})
			}
		}
	}
	validations := compiler.CompileCondition(conditions, options, mode)
	// Messages see no authorizer, as in the API server.
	messageEvaluator := compiler.CompileCondition(messages, plugincel.OptionalVariableDeclarations{HasParams: options.HasParams}, mode)
	for _, e := range append(validations.CompilationErrors(), messageEvaluator.CompilationErrors()...) {
		problems = append(problems, e.Error())
	}
	return validations, messageEvaluator, problems, nil
}

func evaluatePolicy(policyFile, objectFile, paramsFile, namespaceLabels, compat string) (*CostReport, error) {
	policy, err := readPolicy(policyFile)
	if err != nil {
		return nil, err
	}
	objects, err := readObjects(objectFile)
	if err != nil || len(objects) != 1 {
		return nil, fmt.Errorf("%s: want one object (%v)", objectFile, err)
	}
	object := objects[0]
	params, err := readParams(paramsFile)
	if err != nil {
		return nil, err
	}
	report := &CostReport{Budget: celconfig.RuntimeCELCostBudget, PerCallLimit: celconfig.PerCallLimit, CompatVersion: compat}

	old, err := version.ParseMajorMinor(compat)
	if err != nil {
		return nil, fmt.Errorf("-compat %s: %w", compat, err)
	}
	_, _, problems, err := compilePolicy(baseEnvSet(old), environment.NewExpressions, policy, nil)
	if err != nil {
		return nil, err
	}
	report.CompatErrors = append([]string{}, problems...)

	// Each probe forces one variable, in order, so the budget it takes is that variable's own
	// (the ones it reads were forced before it).
	var probes []string
	for _, v := range policy.Spec.Variables {
		probes = append(probes, fmt.Sprintf("type(variables.%s) == null_type", v.Name))
	}
	env := baseEnvSet(environment.DefaultCompatibilityVersion())
	validations, messages, problems, err := compilePolicy(env, environment.StoredExpressions, policy, nil)
	if err != nil {
		return nil, err
	}
	report.Errors = append([]string{}, problems...)

	versioned, request, namespaceObject := admissionInput(object, pairs(namespaceLabels), nil)
	bindings := plugincel.OptionalVariableBindings{VersionedParams: params}
	ctx := context.Background()

	remaining := int64(celconfig.RuntimeCELCostBudget)
	// Cost per variable: run the probes one more at a time (variables are cached within one
	// run only), so each run costs the previous one plus the next variable and its probe.
	previous := int64(0)
	for i := range probes {
		probesSoFar, _, _, err := compilePolicy(env, environment.StoredExpressions, policy, probes[:i+1])
		if err != nil {
			return nil, err
		}
		results, left, err := probesSoFar.ForInput(ctx, versioned, request, bindings, namespaceObject, remaining)
		spent := remaining - left
		entry := ExpressionCost{Name: policy.Spec.Variables[i].Name, Cost: spent - previous}
		if err != nil {
			entry.Error = err.Error()
		} else if i < len(results) && results[i].Error != nil {
			entry.Error = results[i].Error.Error()
		}
		report.Variables = append(report.Variables, entry)
		previous = spent
	}

	report.Messages, report.TotalCost = failedMessages(ctx, validations, messages, policy, versioned, request, bindings,
		namespaceObject, remaining, &report.Errors)
	return report, nil
}

// admissionInput is what the API server hands a policy when `object` is created in a namespace
// with these labels (besides kubernetes.io/metadata.name) and annotations.
func admissionInput(object *unstructured.Unstructured, labels, annotations map[string]string) (*admission.VersionedAttributes, *admissionv1.AdmissionRequest, *corev1.Namespace) {
	gvk := object.GroupVersionKind()
	resource := strings.ToLower(gvk.Kind) + "s"
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource}
	attributes := admission.NewAttributesRecord(object, nil, gvk, object.GetNamespace(), object.GetName(), gvr, "",
		admission.Create, &metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "cel-cost"})
	versioned := versionedAttributes(attributes, gvk, object)
	request := plugincel.CreateAdmissionRequest(attributes, metav1.GroupVersionResource(gvr), metav1.GroupVersionKind(gvk))
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: object.GetNamespace(), Labels: map[string]string{
		"kubernetes.io/metadata.name": object.GetNamespace()}, Annotations: annotations}}
	for k, v := range labels {
		namespace.Labels[k] = v
	}
	return versioned, request, plugincel.CreateNamespaceObject(namespace)
}

// failedMessages runs the policy as the API server does: validations and variables on the
// budget, then the messages of the failed validations on what is left. It returns those
// messages and the cost spent, and appends what failed to evaluate to errs.
func failedMessages(ctx context.Context, validations, messages plugincel.ConditionEvaluator,
	policy *admissionregistrationv1.ValidatingAdmissionPolicy, versioned *admission.VersionedAttributes,
	request *admissionv1.AdmissionRequest, bindings plugincel.OptionalVariableBindings, namespaceObject *corev1.Namespace,
	budget int64, errs *[]string) ([]string, int64) {
	evaluated, left, err := validations.ForInput(ctx, versioned, request, bindings, namespaceObject, budget)
	if err != nil {
		*errs = append(*errs, err.Error())
		return []string{}, budget - left
	}
	texts, leftAfterMessages, err := messages.ForInput(ctx, versioned, request, bindings, namespaceObject, left)
	if err != nil {
		*errs = append(*errs, err.Error())
	}
	out := []string{}
	for i, result := range evaluated {
		if result.Error != nil {
			*errs = append(*errs, result.Error.Error())
			continue
		}
		if result.EvalResult == nil || result.EvalResult.Value() == true {
			continue
		}
		if i < len(texts) && texts[i].EvalResult != nil {
			if s, ok := texts[i].EvalResult.Value().(string); ok {
				out = append(out, s)
				continue
			}
		}
		out = append(out, policy.Spec.Validations[i].Message)
	}
	return out, budget - leftAfterMessages
}

// pairs reads "k=v,..." into a map (nil for none).
func pairs(text string) map[string]string {
	var m map[string]string
	for _, kv := range strings.Split(text, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if m == nil {
				m = map[string]string{}
			}
			m[k] = v
		}
	}
	return m
}
