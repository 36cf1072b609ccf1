//! Reading the input one object at a time.
//!
//! A `kubectl get pods -A -o json` dump of a large cluster is most of a gigabyte; parsing it
//! into one [`serde_json::Value`] (and cloning `items`) took many times the input
//! (docs/benchmarks.md#figures-the-codes-comments-cite,
//! docs/benchmarks.md#what-does-the-offline-audit-cost). Here a `List`'s `items`
//! are visited one by one: each item becomes a `Value` of a few KB, is turned into a compact
//! view by the caller and dropped before the next is read. JSON is read from a buffered reader
//! (never whole); YAML is cut into documents and a List's entries (`yaml`), each parsed on its
//! own. Both parsers reject nesting deeper than 128 levels as soon as they reach it.

use std::cell::RefCell;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::unique::{duplicate, UniqueKeys};
use super::yaml::{self, Piece, Text};
use super::{strict, workloads, AuditError, Audited, Inventory};
use crate::api::{clip, decode, mention, ClusterSidecarPolicy, SidecarPolicy};
use crate::engine::{CompiledPolicy, Interner};

/// What is done with each object: `(position in the input, object)`.
type Each<'a> = dyn FnMut(usize, Value) -> Result<(), AuditError> + 'a;

/// An input: a file, standard input or bytes in memory, buffered.
struct Source<'r> {
    name: String,
    reader: Box<dyn BufRead + 'r>,
}

fn open(path: &Path) -> Result<Source<'static>, AuditError> {
    if path == Path::new("-") {
        return Ok(Source { name: "<stdin>".into(), reader: Box::new(BufReader::new(std::io::stdin())) });
    }
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| AuditError::Read { file: name.clone(), source })?;
    Ok(Source { name, reader: Box::new(BufReader::with_capacity(1 << 20, file)) })
}

/// Calls `each` for every top-level object of the input, `List`s and arrays flattened, in
/// order; what it says is wrong is reported about that object. An input without any document
/// (empty, only comments) is an error; an empty `List` is not.
fn for_each_object(mut source: Source, each: &mut dyn FnMut(&Value) -> Result<(), String>) -> Result<(), AuditError> {
    let file = source.name.clone();
    let each: &mut Each = &mut |position: usize, object: Value| {
        for object in flattened(object) {
            each(&object).map_err(|message| AuditError::Object {
                file: file.clone(),
                object: describe_object(&object, position),
                message,
            })?;
        }
        Ok(())
    };
    // A parser's message may quote the input (serde's `invalid type: string "…"`).
    let syntax = |message: String| AuditError::Syntax { file: file.clone(), message: clip(&message) };
    let read_error = |source: std::io::Error| AuditError::Read { file: file.clone(), source };
    let (first, first_line) = first_significant_byte(&mut source.reader).map_err(read_error)?;
    let stopped = RefCell::new(None);
    let mut position = 0;
    let mut documents = 0;
    match first {
        None => {}
        Some(b'{' | b'[') => {
            let mut de = serde_json::Deserializer::from_reader(source.reader);
            while de.end().is_err() {
                documents += 1;
                let seed = TopLevel { each: &mut *each, position: &mut position, stopped: &stopped };
                let result = seed.deserialize(&mut de);
                take_stop(&stopped)?;
                result.map_err(|e| syntax(e.to_string()))?;
            }
        }
        Some(_) => {
            // Pieces (documents, a List's entries) are parsed one at a time; see `yaml`.
            let mut piece = |piece: Piece| {
                let (Piece::Item(Text { too_deep, .. }) | Piece::Document(Text { too_deep, .. })) = piece;
                if let Some((at, column)) = too_deep {
                    return Err(syntax(format!(
                        "nested deeper than {} levels at line {at} column {column}",
                        yaml::MAX_DEPTH
                    )));
                }
                let Text { text, line, .. } = match piece {
                    Piece::Item(Text { text, line, .. }) => {
                        let UniqueKeys(object) = serde_norway::from_str(text)
                            .map_err(|e| syntax(yaml::input_lines(&e.to_string(), line)))?;
                        let at = position;
                        position += 1;
                        return each(at, object);
                    }
                    Piece::Document(text) => text,
                };
                for document in serde_norway::Deserializer::from_str(text) {
                    let seed = TopLevel { each: &mut *each, position: &mut position, stopped: &stopped };
                    let result = seed.deserialize(document);
                    take_stop(&stopped)?;
                    let held = result.map_err(|e| syntax(yaml::input_lines(&e.to_string(), line)))?;
                    documents += usize::from(held);
                }
                Ok(())
            };
            yaml::split(&mut source.reader, first_line, &read_error, &mut piece)?;
        }
    }
    if documents == 0 {
        // Most likely a failed redirect; "No alerts." would hide it.
        return Err(AuditError::Empty { file: source.name });
    }
    Ok(())
}

fn take_stop(stopped: &RefCell<Option<AuditError>>) -> Result<(), AuditError> {
    stopped.borrow_mut().take().map_or(Ok(()), Err)
}

/// Skips blank lines (and a byte-order mark); gives the first byte that is not blank and the
/// number of its line. The blanks that begin that line stay: they are YAML's indentation (a
/// manifest indented as a whole, as in a heredoc, read unindented on its first line only
/// and was refused or, as the fuzz target audit_input found, read as another document).
fn first_significant_byte(reader: &mut dyn BufRead) -> std::io::Result<(Option<u8>, usize)> {
    let mut line = 1;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok((None, line));
        }
        let skip = buffer.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(buffer.len());
        let blank_lines = buffer[..skip].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        line += buffer[..blank_lines].iter().filter(|b| **b == b'\n').count();
        if buffer[skip..].starts_with(&[0xEF, 0xBB, 0xBF]) {
            reader.consume(skip + 3);
        } else if skip < buffer.len() {
            let first = buffer[skip];
            reader.consume(blank_lines);
            return Ok((Some(first), line));
        } else {
            // Only blanks in the buffer: the line's indentation, if it goes on past the buffer
            // (a pipe's first read was "  "), is lost; a buffer is at least one pipe write.
            reader.consume(if blank_lines == 0 { skip } else { blank_lines });
        }
    }
}

/// One document: an object (a `List`'s `items` streamed), an array of objects, or nothing.
/// Deserializes to whether the document held anything at all.
struct TopLevel<'a, 'b> {
    each: &'a mut Each<'b>,
    position: &'a mut usize,
    /// The caller's error, which stops the parse; the parser then reports a placeholder.
    stopped: &'a RefCell<Option<AuditError>>,
}

impl TopLevel<'_, '_> {
    fn emit<E: serde::de::Error>(&mut self, object: Value) -> Result<(), E> {
        let position = *self.position;
        *self.position += 1;
        (self.each)(position, object).map_err(|e| {
            *self.stopped.borrow_mut() = Some(e);
            E::custom("stopped")
        })
    }
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object, a List, or an array of objects")
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(UniqueKeys(object)) = seq.next_element()? {
            self.emit(object)?;
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
        let mut fields = Map::new();
        let mut listed = false;
        while let Some(key) = map.next_key::<String>()? {
            if (key == "items" && listed) || fields.contains_key(&key) {
                return Err(serde::de::Error::custom(duplicate(&key)));
            }
            if key == "items" {
                // A List: its items are streamed, never held together.
                listed = true;
                map.next_value_seed(Items { top: &mut self })?;
            } else {
                let UniqueKeys(value) = map.next_value()?;
                fields.insert(key, value);
            }
        }
        if !listed {
            self.emit(Value::Object(fields))?;
        }
        Ok(true)
    }
}

/// A `List`'s `items`, each handed over as it is read.
struct Items<'t, 'a, 'b> {
    top: &'t mut TopLevel<'a, 'b>,
}

impl<'de> DeserializeSeed<'de> for Items<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("items: a list of objects")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(UniqueKeys(object)) = seq.next_element()? {
            self.top.emit(object)?;
        }
        Ok(())
    }
}

/// `object`, or the objects of a List that is an entry of a List, all the way down, as
/// kubectl reads them (cli-runtime's `FlattenListVisitor`): a manifest that nests them is
/// applied whole, so it is audited whole.
fn flattened(object: Value) -> Vec<Value> {
    let mut objects = Vec::new();
    let mut nested = vec![object];
    while let Some(mut object) = nested.pop() {
        let is_list = object.get("kind").and_then(Value::as_str).is_some_and(|kind| kind.ends_with("List"));
        match object.get_mut("items").and_then(Value::as_array_mut).filter(|_| is_list) {
            Some(items) => nested.extend(std::mem::take(items).into_iter().rev()),
            None => objects.push(object),
        }
    }
    objects
}

/// `Kind namespace/name`, for error messages; each [`mention`]ed (an input no API server
/// checked may hold any name).
fn describe_object(value: &Value, position: usize) -> String {
    let kind = value.get("kind").and_then(Value::as_str).map_or("object".into(), mention);
    let meta = value.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).map(mention);
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).map(mention);
    match (namespace, name) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => format!("{kind} #{}", position + 1),
    }
}

/// Reads the Pods, Pod templates and Namespace labels of one input into `inventory`; views
/// share names through `names`.
pub(crate) fn load_pods(path: &Path, inventory: &mut Inventory, names: &mut Interner) -> Result<(), AuditError> {
    let source = open(path)?;
    let origin = (path != Path::new("-")).then(|| source.name.clone());
    pods_of(source, origin, inventory, names)
}

/// [`load_pods`] of an input already open, named `name` in messages (no file in SARIF
/// locations): for inputs that are not files, and for the fuzz targets (`fuzz/`).
pub fn read_pods(
    name: &str,
    reader: &mut dyn BufRead,
    inventory: &mut Inventory,
    names: &mut Interner,
) -> Result<(), AuditError> {
    pods_of(Source { name: name.to_string(), reader: Box::new(reader) }, None, inventory, names)
}

fn pods_of(
    source: Source,
    origin: Option<String>,
    inventory: &mut Inventory,
    names: &mut Interner,
) -> Result<(), AuditError> {
    for_each_object(source, &mut |object| {
        inventory.rollout_objects.insert(object);
        match workloads::decode(object, names)? {
            workloads::Decoded::Pod(view) => inventory.push(Audited { view, file: origin.clone() }),
            workloads::Decoded::Template(view, concurrency, involved) => {
                if let Some(policy) = concurrency {
                    inventory.concurrency.insert((view.namespace().to_string(), view.workload().1.to_string()), policy);
                }
                inventory.push(Audited { view, file: origin.clone() });
                inventory.failures.insert_object(involved);
            }
            workloads::Decoded::Namespace(name, meta) => {
                inventory.namespaces.insert(name, meta);
            }
            workloads::Decoded::Failure(event, failure, involved) => {
                inventory.failures.add(*event, failure, involved);
            }
            workloads::Decoded::Skipped => {}
        }
        Ok(())
    })?;
    inventory.label_namespaces();
    Ok(())
}

/// Reads and compiles the policies in a file, strictly: an unknown field is an error.
pub(crate) fn load_policies(path: &Path) -> Result<Vec<CompiledPolicy>, AuditError> {
    policies_of(open(path)?)
}

/// [`load_policies`] of an input already open, named `name` in messages: for inputs that are
/// not files, and for the fuzz targets (`fuzz/`).
pub fn read_policies(name: &str, reader: &mut dyn BufRead) -> Result<Vec<CompiledPolicy>, AuditError> {
    policies_of(Source { name: name.to_string(), reader: Box::new(reader) })
}

fn policies_of(source: Source) -> Result<Vec<CompiledPolicy>, AuditError> {
    let file = source.name.clone();
    let mut policies = Vec::new();
    for_each_object(source, &mut |object| {
        let kind = object.get("kind").and_then(Value::as_str).ok_or("kind: missing")?;
        match kind {
            "SidecarPolicy" => strict::check::<SidecarPolicy>(object)?,
            "ClusterSidecarPolicy" => strict::check::<ClusterSidecarPolicy>(object)?,
            _ => return Err(format!("kind {} is not a SidecarPolicy or ClusterSidecarPolicy", mention(kind))),
        }
        policies.push(compile_policy(kind, object.clone())?);
        Ok(())
    })?;
    if policies.is_empty() {
        // Falling back to the built-in policy would audit with rules the user did not ask for.
        return Err(AuditError::Empty { file });
    }
    Ok(policies)
}

/// Decodes and compiles a policy of `kind` (`SidecarPolicy`, else `ClusterSidecarPolicy`):
/// what is wrong with it, naming the field.
pub(super) fn compile_policy(kind: &str, object: Value) -> Result<CompiledPolicy, String> {
    match kind {
        "SidecarPolicy" => CompiledPolicy::from_sidecar_policy(&decode(object).map_err(|e| e.to_string())?).1,
        _ => CompiledPolicy::from_cluster_policy(&decode(object).map_err(|e| e.to_string())?).1,
    }
    .map_err(|e| e.to_string())
}

/// Says that an object of `kind` cannot be decoded and is left out, by name and field: one
/// object a tenant wrote oddly never fails an audit of everyone's.
pub(super) fn skipping(kind: &str, bad: &crate::api::Undecodable) {
    eprintln!("sidecar-watch audit: skipping {kind} {}: {}", bad.key(), bad.error);
}
