//! Writes the seed corpora of the fuzz targets from the fixtures and the shipped examples:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-seeds` (fuzz/README.md).
//!
//! Seeds are small and derived, so they are made, not committed: `fuzz/corpus/<target>/seed-*`
//! is rewritten each time; what a long run added to a corpus stays.
//!
//! - `pod_view`: every Pod of `tests/fixtures` and `examples/pods.json` as one JSON object
//!   (a watch item), and one Pod's states in a row.
//! - `pod_protobuf`: kube-apiserver's answers of `tests/fixtures/protobuf` (lists, a Status, a
//!   watch stream) as they are, and each frame of the stream alone.
//! - `policy_spec`: the policy files as they are, each policy as JSON (the operator's watch
//!   sees JSON), and the durations of the README.
//! - `audit_input`: every fixture and manifest as it is, and a part of `examples/pods.json`
//!   as a JSON List and as the YAML List `kubectl get pods -o yaml` prints.
//! - `audit_output`: structured input (`arbitrary`), seeded with the fixtures' bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sidecar_watch::api::protobuf::take_frame;

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("fuzz/ has a parent")?.to_path_buf();
    let corpus = root.join("fuzz/corpus");
    let mut seeds = Seeds { corpus, written: 0 };

    let mut fixtures: Vec<PathBuf> = Vec::new();
    for dir in ["tests/fixtures", "tests/fixtures/manifests"] {
        for entry in std::fs::read_dir(root.join(dir)).with_context(|| format!("reading {dir}"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                fixtures.push(path);
            }
        }
    }
    fixtures.sort();

    let examples: Value = serde_json::from_str(&read(&root.join("examples/pods.json"))?)?;
    let example_pods = examples["items"].as_array().context("examples/pods.json is a List")?;
    let mut pods: Vec<(String, Value)> = Vec::new();
    for path in &fixtures {
        let text = read(path)?;
        let name = stem(path);
        seeds.write("audit_input", &name, text.as_bytes())?;
        seeds.write("audit_output", &name, text.as_bytes())?;
        if name.ends_with("-policy") {
            policy_seeds(&mut seeds, &name, &text)?;
            continue;
        }
        for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let object: Value = serde::Deserialize::deserialize(document).with_context(|| name.clone())?;
            if object["kind"] == "Pod" {
                pods.push((format!("{name}-{i}"), object));
            }
        }
    }
    for (i, pod) in example_pods.iter().enumerate() {
        pods.push((format!("example-{i}"), pod.clone()));
    }
    for (name, pod) in &pods {
        seeds.write("pod_view", name, &serde_json::to_vec(pod)?)?;
    }
    // One Pod's states in a row: as it was, then its restarts counted up and its readiness
    // lost, as consecutive watch events would bring them.
    if let Some((name, pod)) = pods.first() {
        let mut later = pod.clone();
        if let Some(statuses) = later.pointer_mut("/status/containerStatuses").and_then(Value::as_array_mut) {
            for status in statuses {
                status["restartCount"] = json!(status["restartCount"].as_i64().unwrap_or(0) + 1);
                status["ready"] = json!(false);
            }
        }
        let stream = format!("{}\n{}\n", serde_json::to_string(pod)?, serde_json::to_string(&later)?);
        seeds.write("pod_view", &format!("{name}-states"), stream.as_bytes())?;
    }

    for entry in std::fs::read_dir(root.join("tests/fixtures/protobuf")).context("reading tests/fixtures/protobuf")? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "pb") {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        seeds.write("pod_protobuf", &stem(&path), &bytes)?;
        // The watch stream's frames one by one, each with its 4-byte length.
        if stem(&path) == "watch" {
            let mut pending = bytes::BytesMut::from(&bytes[..]);
            let mut i = 0;
            while let Some(frame) = take_frame(&mut pending)? {
                let length = u32::try_from(frame.len())?.to_be_bytes();
                seeds.write("pod_protobuf", &format!("watch-frame-{i}"), &[&length[..], &frame].concat())?;
                i += 1;
            }
        }
    }

    policy_seeds(&mut seeds, "examples-policies", &read(&root.join("examples/policies.yaml"))?)?;
    for duration in ["0", "30s", "5m", "1h30m", "250ms", "1d", "2w", "1y"] {
        seeds.write("policy_spec", &format!("duration-{duration}"), duration.as_bytes())?;
    }

    let few = &example_pods[..example_pods.len().min(3)];
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": few});
    seeds.write("audit_input", "examples-list.json", &serde_json::to_vec_pretty(&list)?)?;
    seeds.write("audit_input", "examples-list.yaml", serde_norway::to_string(&list)?.as_bytes())?;
    seeds.write("audit_input", "examples-array.json", &serde_json::to_vec(few)?)?;

    println!("{} seeds written under {}", seeds.written, seeds.corpus.display());
    Ok(())
}

/// A policy file as it is, and each of its policies as JSON.
fn policy_seeds(seeds: &mut Seeds, name: &str, text: &str) -> Result<()> {
    seeds.write("policy_spec", name, text.as_bytes())?;
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let policy: Value = serde::Deserialize::deserialize(document).with_context(|| name.to_string())?;
        seeds.write("policy_spec", &format!("{name}-{i}.json"), &serde_json::to_vec(&policy)?)?;
    }
    Ok(())
}

struct Seeds {
    corpus: PathBuf,
    written: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.written += 1;
        Ok(())
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
