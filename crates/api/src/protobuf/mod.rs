//! Pods read as protobuf and handed on as the JSON of the fields [`SlimPod`] reads.
//!
//! kube-apiserver spends most of a start encoding Pods, and protobuf is its cheap encoding
//! (what it saves: docs/benchmarks.md#what-does-the-operator-cost-the-api-server). kube-rs
//! speaks JSON only, so the Pod watch asks for protobuf (the operator's client layer,
//! `src/controller/pod_protobuf.rs`) and this module turns each list page, watch event and
//! Status into the JSON kube-rs expects, cut to what [`SlimPod`] reads.
//!
//! The messages (`wire`) are written by hand for the fields read rather than taken from a
//! crate of generated types (`k8s-pb`): decoding skips everything else unallocated, as the
//! JSON side does, where the full generated `Pod` would allocate `managedFields`, env and
//! volumes only to drop them.
//!
//! Each Pod of a list is decoded on its own: one that cannot be read becomes an object that
//! [`LenientPod`] reports as undecodable by its identity, never a failed list.
//!
//! [`SlimPod`]: super::SlimPod
//! [`LenientPod`]: super::LenientPod

mod wire;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use serde::Serialize;

/// What starts every protobuf object kube-apiserver writes (a `runtime.Unknown` follows).
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type to ask for (`Accept`), and that kube-apiserver answers with; watches add
/// `;stream=watch`.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The key that [`LenientPod`](super::LenientPod) finds first in the JSON of a Pod whose
/// protobuf could not be decoded; its value says why.
pub const UNDECODABLE_KEY: &str = "sidecarWatchUndecodable";

/// No object kube-apiserver stores exceeds etcd's request limit (1.5 MiB by default), so a
/// watch frame's length beyond this is a broken stream, not a Pod to buffer.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Takes the first frame of a protobuf watch stream (a 4-byte big-endian length, then a
/// `WatchEvent`) off the front of `pending`, without its length; `None` until it is complete.
pub fn take_frame(pending: &mut BytesMut) -> Result<Option<Bytes>, TranscodeError> {
    let Some(prefix) = pending.first_chunk::<4>() else { return Ok(None) };
    let length = u32::from_be_bytes(*prefix) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(TranscodeError::FrameTooLarge(length));
    }
    if pending.len() < 4 + length {
        return Ok(None);
    }
    pending.advance(4);
    Ok(Some(pending.split_to(length).freeze()))
}

/// Why a response could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The body is not a protobuf object of kube-apiserver's.
    #[error("the answer does not start with kube-apiserver's protobuf magic k8s\\0")]
    NoMagic,
    /// A message could not be decoded.
    #[error("cannot decode the {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// prost's reason (field and wire type; never a value).
        source: prost::DecodeError,
    },
    /// A kind the Pod watch does not expect.
    #[error("unexpected kind {0:?} in a Pod list or watch")]
    UnexpectedKind(String),
    /// A watch event kube-apiserver does not send for Pods: its type and its object's kind.
    #[error("unexpected watch event {0:?} of a {1:?} in a Pod watch")]
    UnexpectedEvent(String, String),
    /// A watch frame longer than [`MAX_FRAME_BYTES`].
    #[error("a Pod watch event of {0} bytes (at most {MAX_FRAME_BYTES})")]
    FrameTooLarge(usize),
    /// A watch event without its object.
    #[error("a watch event of type {0:?} has no object")]
    NoObject(String),
    /// Writing the JSON failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn decode<M: Message + Default>(what: &'static str, bytes: Bytes) -> Result<M, TranscodeError> {
    M::decode(bytes).map_err(|source| TranscodeError::Decode { what, source })
}

/// Opens the `k8s\0` + `runtime.Unknown` envelope: the kind it carries and its encoding.
fn open_envelope(body: &Bytes) -> Result<(wire::TypeMeta, Bytes), TranscodeError> {
    let Some(inner) = body.strip_prefix(MAGIC) else { return Err(TranscodeError::NoMagic) };
    let unknown: wire::Unknown = decode("envelope", body.slice_ref(inner))?;
    Ok((unknown.type_meta.unwrap_or_default(), unknown.raw))
}

/// A list page (`PodList`) or a `Status`, as one JSON document.
pub fn list_to_json(body: &Bytes) -> Result<Vec<u8>, TranscodeError> {
    let (type_meta, raw) = open_envelope(body)?;
    let mut out = Vec::with_capacity(raw.len() / 4);
    match type_meta.kind.as_str() {
        "PodList" => {
            let list: wire::PodList = decode("PodList", raw)?;
            out.extend_from_slice(br#"{"apiVersion":"v1","kind":"PodList","metadata":"#);
            serde_json::to_writer(&mut out, &list.metadata.unwrap_or_default())?;
            out.extend_from_slice(br#","items":["#);
            for (i, item) in list.items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_pod(&mut out, "v1", "Pod", item)?;
            }
            out.extend_from_slice(b"]}");
        }
        "Status" => write_status(&mut out, raw)?,
        other => return Err(TranscodeError::UnexpectedKind(other.to_string())),
    }
    Ok(out)
}

/// One watch frame (a `WatchEvent`, its length prefix removed) as one JSON line.
pub fn watch_event_to_json(frame: Bytes, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let event: wire::WatchEvent = decode("WatchEvent", frame)?;
    let Some(object) = event.object else { return Err(TranscodeError::NoObject(event.kind)) };
    let (type_meta, raw) = open_envelope(&object.raw)?;
    out.extend_from_slice(br#"{"type":"#);
    serde_json::to_writer(&mut *out, &event.kind)?;
    out.extend_from_slice(br#","object":"#);
    // Only what kube-apiserver sends: anything else would reach kube-rs as an event it cannot
    // read, so it fails here with a message that says what came.
    match (event.kind.as_str(), type_meta.kind.as_str()) {
        ("ADDED" | "MODIFIED" | "DELETED", "Pod") => write_pod(out, &type_meta.api_version, "Pod", raw)?,
        ("BOOKMARK", kind @ "Pod") => {
            let bookmark: wire::Bookmark = decode("bookmark", raw)?;
            let metadata = bookmark.metadata.unwrap_or_default();
            serde_json::to_writer(&mut *out, &Typed::new(&type_meta.api_version, kind, &metadata))?;
        }
        ("ERROR", "Status") => write_status(out, raw)?,
        (event, kind) => return Err(TranscodeError::UnexpectedEvent(event.to_string(), kind.to_string())),
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// An object with its type and metadata, and what else it carries.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Typed<'a, M, S = (), T = ()> {
    api_version: &'a str,
    kind: &'a str,
    metadata: &'a M,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<&'a S>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a T>,
}

impl<'a, M> Typed<'a, M> {
    fn new(api_version: &'a str, kind: &'a str, metadata: &'a M) -> Self {
        Typed { api_version, kind, metadata, spec: None, status: None }
    }
}

fn write_pod(out: &mut Vec<u8>, api_version: &str, kind: &str, raw: Bytes) -> Result<(), TranscodeError> {
    match wire::Pod::decode(raw.clone()) {
        Ok(pod) => {
            let metadata = pod.metadata.unwrap_or_default();
            let object =
                Typed { api_version, kind, metadata: &metadata, spec: pod.spec.as_ref(), status: pod.status.as_ref() };
            serde_json::to_writer(out, &object)?;
        }
        Err(error) => {
            // Its identity alone, so that it is reported by name and forgotten if it was
            // tracked; prost's message names the message and wire type, never a value.
            let metadata = wire::PodIdentity::decode(raw).ok().and_then(|p| p.metadata).unwrap_or_default();
            #[derive(Serialize)]
            struct Undecodable<'a> {
                #[serde(rename = "sidecarWatchUndecodable")]
                why: String,
                metadata: &'a wire::ObjectMeta,
            }
            serde_json::to_writer(out, &Undecodable { why: format!("protobuf: {error}"), metadata: &metadata })?;
        }
    }
    Ok(())
}

fn write_status(out: &mut Vec<u8>, raw: Bytes) -> Result<(), TranscodeError> {
    let status: wire::Status = decode("Status", raw)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct StatusJson<'a> {
        api_version: &'a str,
        kind: &'a str,
        #[serde(flatten)]
        status: &'a wire::Status,
    }
    serde_json::to_writer(out, &StatusJson { api_version: "v1", kind: "Status", status: &status })?;
    Ok(())
}

#[cfg(test)]
mod tests;
