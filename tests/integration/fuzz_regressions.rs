//! Inputs the fuzz targets (`fuzz/`, fuzz/README.md) broke the operator's promises with, kept
//! as tests: each names the target and the input, and asserts what a user or tenant sees
//! instead. The promise they broke: a message that may quote what a tenant or a manifest
//! wrote (an `audit` error, a policy's condition, the log line of an unreadable Pod) is one
//! line of bounded length, quoting at most a short prefix of any value.

use sidecar_watch::api::{LenientPod, Severity};
use sidecar_watch::audit::{read_pods, read_policies, render_table, AuditError, Finding, Inventory};
use sidecar_watch::engine::{AlertState, Interner};

/// The `audit` error for `input`, read as `audit -f` reads a file named `input`.
fn audit_error(input: &str) -> String {
    let mut inventory = Inventory::default();
    match read_pods("input", &mut input.as_bytes(), &mut inventory, &mut Interner::default()) {
        Ok(()) => panic!("{input:.200} was read"),
        Err(e) => e.to_string(),
    }
}

/// The `audit --policy` error for `input`, read from a file named `policy.yaml`.
fn policy_error(input: &str) -> String {
    match read_policies("policy.yaml", &mut input.as_bytes()) {
        Ok(policies) => panic!("{input:.200} compiled to {} policies", policies.len()),
        Err(e) => e.to_string(),
    }
}

/// One line, at most 1,024 characters: what the fuzz targets assert of every message.
fn assert_one_short_line(message: &str) {
    assert!(message.chars().count() <= 1024, "{} characters: {message:.300}", message.chars().count());
    assert!(!message.chars().any(char::is_control), "a control character in {message:?}");
}

/// audit_input, crash-b80202ca: a fixture whose indentation the fuzzer broke, so that the
/// rest of the document became one quoted multi-line string. The YAML parser's message quoted
/// the whole string: a 2,107-character error line.
#[test]
fn a_document_that_is_one_long_string_is_refused_in_a_short_line() {
    let body = "  scheme: HTTP\n  periodSeconds: 2\n".repeat(60);
    let error = audit_error(&format!("# a Pod\n'{body}'\n"));
    assert_one_short_line(&error);
    assert!(error.starts_with("input: not valid JSON or YAML: invalid type: string \"  scheme: HTTP"), "{error}");
    // Clipped in the middle: what was expected and where stay.
    assert!(
        error.ends_with("expected a Kubernetes object, a List, or an array of objects at line 2 column 1"),
        "{error}"
    );
}

/// policy_spec, crash-4a5a984c: a policy whose `apiVersion` key holds a carriage return. The
/// strict check named the unknown field with the raw character, which returns the cursor
/// and lets the rest of the key overwrite the start of the line on a terminal.
#[test]
fn an_unknown_field_with_a_control_character_is_named_escaped() {
    let policy = r#"{"apiV\rsion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
                     "metadata": {"name": "mesh", "namespace": "shop"}, "spec": {}}"#;
    let error = policy_error(policy);
    assert_one_short_line(&error);
    assert_eq!(
        error,
        r"policy.yaml: SidecarPolicy shop/mesh: apiV\rsion: unknown field (not in the sidecarpolicies.sidecarwatch.io schema)"
    );
}

/// audit_input oracle: a hand-written Pod named `a` newline `b` with two containers named
/// `x`. The error named the object unescaped, so the name began a line of its own.
#[test]
fn an_object_with_an_unprintable_name_is_named_quoted() {
    let pod = r#"{"kind": "Pod", "metadata": {"name": "a\nb", "namespace": "shop"},
                  "spec": {"containers": [{"name": "x"}, {"name": "x"}]}}"#;
    let error = audit_error(pod);
    assert_one_short_line(&error);
    assert_eq!(error, r#"input: Pod shop/"a\nb": spec.containers[1].name: duplicate container name "x""#);
    // A name as long as a fuzzer likes is quoted by a prefix and its length.
    let long = pod.replace(r"a\nb", &"n".repeat(100_000));
    let error = audit_error(&long);
    assert_one_short_line(&error);
    assert!(error.starts_with(&format!("input: Pod shop/\"{}\"… (100000 bytes): ", "n".repeat(64))), "{error:.300}");
}

/// audit_input oracle: a `containerPort` of 5,000 `A`s. serde's message (`invalid type:
/// string "AAAA…"`) was passed on whole: a 5,094-character error line.
#[test]
fn a_long_value_of_the_wrong_type_is_quoted_by_a_prefix() {
    let pod = format!(
        r#"{{"kind": "Pod", "metadata": {{"name": "p"}},
             "spec": {{"containers": [{{"name": "x", "ports": [{{"containerPort": "{}"}}]}}]}}}}"#,
        "A".repeat(5_000)
    );
    let error = audit_error(&pod);
    assert_one_short_line(&error);
    assert!(error.starts_with("input: Pod p: spec.containers[0].ports[0].containerPort: invalid type: string \"AAA"));
    assert!(error.ends_with("expected i32"), "{error}");
}

/// pod_view, crash-799dcb0d: a Pod named `restartn"` newline `t-all` whose container's
/// `image` is an object. Its log line (`object cannot be decoded; skipped`) named it with the raw
/// newline, so a tenant's Pod name could forge a log record of its own. And (the oracle,
/// probed) a label key of 100,000 characters whose value is not a string was logged whole in
/// the field path.
#[test]
fn an_unreadable_pod_is_logged_in_one_short_line() {
    let pod = r#"{"metadata": {"name": "restartn\"\nt-all", "namespace": "ml"},
                  "spec": {"containers": [{"name": "app", "image": {"requests": {"cpu": "50m"}}}]}}"#;
    let LenientPod::Undecodable(bad) = serde_json::from_str::<LenientPod>(pod).expect("never fails") else {
        panic!("an image of the wrong type is decoded");
    };
    assert_eq!(bad.key(), r#"ml/"restartn\"\nt-all""#);
    assert_eq!(bad.error, "spec.containers[0].image: a value of the wrong type or out of range");

    let key = "k".repeat(100_000);
    let pod = format!(r#"{{"metadata": {{"name": "evil\nforged", "namespace": "flood", "labels": {{"{key}": 5}}}}}}"#);
    let LenientPod::Undecodable(bad) = serde_json::from_str::<LenientPod>(&pod).expect("never fails") else {
        panic!("a label of the wrong type is decoded");
    };
    assert_one_short_line(&bad.error);
    assert!(bad.error.starts_with("metadata.labels.kkkk"), "{}", bad.error);
    assert!(bad.error.ends_with(": a value of the wrong type or out of range"), "{}", bad.error);
    assert_eq!(bad.key(), r#"flood/"evil\nforged""#);
}

/// The kind of an object `audit --policy` does not take is named quoted too.
#[test]
fn an_unknown_kind_is_named_quoted() {
    let error = policy_error("kind: \"Sidecar\\x1b[2JPolicy\"\nmetadata: {name: p}\n");
    assert_one_short_line(&error);
    assert_eq!(
        error,
        r#"policy.yaml: "Sidecar\u{1b}[2JPolicy" p: kind "Sidecar\u{1b}[2JPolicy" is not a SidecarPolicy or ClusterSidecarPolicy"#
    );
    assert!(matches!(read_policies("policy.yaml", &mut "kind: Pod\n".as_bytes()), Err(AuditError::Object { .. })));
}

/// audit_output: 64 findings, one of them on a Pod whose name is 100,000 characters long (a
/// hand-written manifest; no API server checked it). Every row was padded to that name: a
/// 6.4 MB table of blanks. Now the long cell is printed whole, unaligned, and the other
/// rows keep their columns.
#[test]
fn one_huge_name_does_not_pad_every_row_of_the_table() {
    let finding = |pod: &str| Finding {
        alertname: "SidecarContainerNotReady".into(),
        severity: Severity::Warning,
        namespace: "shop".into(),
        pod: pod.into(),
        container: "envoy".into(),
        kind: "Pod".into(),
        policy: "default".into(),
        policy_namespace: String::new(),
        state: AlertState::Firing,
        since: Some("2025-06-03T10:20:00Z".into()),
        message: "Sidecar envoy is not ready".into(),
        identified_by: Some("native".into()),
        check: None,
        workload_kind: "Pod".into(),
        workload: pod.into(),
        file: None,
    };
    let huge = "p".repeat(100_000);
    let findings: Vec<Finding> =
        std::iter::once(finding(&huge)).chain((0..63).map(|i| finding(&format!("web-{i:02}")))).collect();
    let table = render_table(&findings, "2025-06-03T10:30:00Z".parse().expect("now"), false);
    assert!(table.len() < 110_000, "{} bytes", table.len());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 64 + 3);
    assert!(lines[1].starts_with(&format!("shop/{huge}  envoy")), "{:.120}", lines[1]);
    // The other rows are aligned under the header, as without the long name.
    let column = lines[0].find("CONTAINER").expect("header");
    assert_eq!(lines[2].find("envoy"), Some(column), "{}", lines[2]);
    assert_eq!(&lines[2][..column], "shop/web-00  ");
}

/// audit_input, crash-a2465481 (the YAML reader against the same YAML parsed whole): a
/// fixture in which a quoted string ran on over lines at column 0 that read `items:` and `- …`.
/// The reader cut a List out of the string. Reduced: a List whose only "Pod" is text inside
/// its note was audited, findings and all, for a Pod the YAML does not hold.
#[test]
fn a_list_inside_a_quoted_string_is_text() {
    let yaml = "kind: List\nmetadata:\n  note: 'x\nitems:\n- kind: Pod\n  metadata: {name: ghost, namespace: shop}\n  \
                spec: {containers: [{name: envoy, image: \"envoy:latest\"}, {name: app, image: \"a:1\"}]}\nother: y'\n";
    let mut inventory = Inventory::default();
    read_pods("input", &mut yaml.as_bytes(), &mut inventory, &mut Interner::default()).expect("valid YAML");
    assert_eq!(inventory.pods.len(), 0, "a List without items");
}

/// audit_input, crash-b5acffd1 (reduced by `cargo fuzz tmin` to ` items:\n ::`): the reader
/// skipped the blanks before the first byte of the input, so a first line indented like the
/// rest (a heredoc, a snippet pasted from a document) lost its indentation alone and meant
/// something else: a List whose `items` are null became one whose `items` are a mapping,
/// refused; a whole indented manifest was refused.
#[test]
fn an_input_indented_as_a_whole_keeps_its_first_line_indented() {
    let read = |yaml: &str| {
        let mut inventory = Inventory::default();
        read_pods("input", &mut yaml.as_bytes(), &mut inventory, &mut Interner::default()).map(|()| inventory)
    };
    let found = read(" items:\n ::").expect("a List without items");
    assert_eq!(found.pods.len(), 0);
    let manifest = "\n\n  apiVersion: v1\n  kind: Pod\n  metadata: {name: indented, namespace: shop}\n  \
                    spec: {containers: [{name: app, image: \"a:1\"}]}\n";
    let found = read(manifest).expect("an indented Pod");
    assert_eq!(found.pods.len(), 1);
    assert_eq!(found.pods[0].view.name(), "indented");
    // Line numbers in messages still count the blank lines.
    let error = read("\n\n  kind: Pod\n  spec: [\n").map(|_| ()).expect_err("unclosed");
    assert!(error.to_string().contains("line 5"), "{error}");
}

/// audit_input, crash-b5acffd1 (the input whole): a byte-order mark at the start of a line
/// inside a List entry. The YAML parser skips it and counts it as one column; the List
/// splitter took the line for column 0, ended the entry there and refused the rest, which
/// `kubectl` reads as one Pod.
#[test]
fn a_byte_order_mark_starting_a_line_counts_as_one_column() {
    let yaml = "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    labels:\n      \
                app: web\n\u{FEFF}     hash: x\n    name: marked\n    namespace: shop\n  spec:\n    \
                containers:\n    - name: app\n      image: \"a:1\"\nkind: List\n";
    let mut inventory = Inventory::default();
    read_pods("input", &mut yaml.as_bytes(), &mut inventory, &mut Interner::default()).expect("one Pod");
    assert_eq!(inventory.pods.len(), 1);
    assert_eq!(inventory.pods[0].view.name(), "marked");
}

/// audit_input, crash-c272d9ff: a List with `items:` twice. The List splitter read the
/// entries of both; a whole parse keeps only the second (serde_json's `Value` keeps the last
/// of two equal keys), so the two disagreed about what the file holds. A repeated key is now
/// refused wherever it is, as `kubectl apply --validate=strict` refuses duplicate fields: a
/// container's `image:` twice was audited on the second.
#[test]
fn a_repeated_key_is_refused_naming_it() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a, namespace: shop}\n  \
                spec: {containers: [{name: app, image: \"a:1\"}]}\nitems:\n- kind: Pod\n  metadata: {name: b, \
                namespace: shop}\n  spec: {containers: [{name: app, image: \"a:1\"}]}\n";
    let error = audit_error(list);
    assert!(error.contains("duplicate key \"items\""), "{error}");
    assert_one_short_line(&error);

    let image_twice = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec:\n  containers:\n  \
                       - name: app\n    image: \"a:1\"\n    image: \"b:2\"\n";
    let error = audit_error(image_twice);
    assert!(error.contains("spec.containers[0]: duplicate key \"image\" at line 6"), "{error}");

    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "name": "b"}, "spec": {}}"#;
    let error = audit_error(json);
    assert!(error.contains("duplicate key \"name\""), "{error}");

    // A key repeated in another object is no repetition.
    let mut inventory = Inventory::default();
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec: {containers: [{name: app, \
               image: \"a:1\"}, {name: proxy, image: \"p:1\"}]}\n";
    read_pods("input", &mut two.as_bytes(), &mut inventory, &mut Interner::default()).expect("valid");
    assert_eq!(inventory.pods.len(), 1);
}

/// audit_input, crash-e2b6488b: a document that is the float `.NAN` (the oracle's whole
/// parse made it a null, an empty document). A document that is not an object, a List or an
/// array is refused, saying what was expected.
#[test]
fn a_document_that_is_a_number_is_refused() {
    let error = audit_error(".NAN");
    assert!(error.contains("expected a Kubernetes object, a List, or an array of objects"), "{error}");
    assert_one_short_line(&error);
}
