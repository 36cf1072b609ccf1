//! The protobuf reader of the Pod watch (`api::protobuf`): what kube-apiserver, or anything
//! between it and the operator, sends when Pods are asked for as protobuf. The input is taken
//! both as a list answer (`PodList` or `Status` in kube-apiserver's envelope) and as a watch
//! stream (frames of a 4-byte length and a `WatchEvent`), as the client's layer reads them.
//!
//! Beyond "no panic": whatever is written is the JSON kube-rs then reads, so it must parse as
//! a Pod list of `LenientPod`s, a Status, or watch events of them; every Pod that cannot be
//! read is reported with an error of one short line.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sidecar_watch::api::protobuf::{list_to_json, take_frame, watch_event_to_json};
use sidecar_watch::api::LenientPod;
use sidecar_watch_fuzz::assert_one_bounded_line;

/// Watch frames read from one input, at most.
const MAX_FRAMES: usize = 16;

#[derive(serde::Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<LenientPod>,
}

fn check(pod: &LenientPod) {
    if let LenientPod::Undecodable(bad) = pod {
        assert_one_bounded_line("an unreadable Pod's error", &bad.error);
        assert_one_bounded_line("an unreadable Pod's key", &bad.key());
    }
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(json) = list_to_json(&body) {
        let list: List = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{e}: the list written is no list: {}", String::from_utf8_lossy(&json)));
        list.items.iter().for_each(check);
    }
    let mut pending = bytes::BytesMut::from(data);
    for _ in 0..MAX_FRAMES {
        let Ok(Some(frame)) = take_frame(&mut pending) else { break };
        let mut line = Vec::new();
        if watch_event_to_json(frame, &mut line).is_ok() {
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one event, one line");
            let event: kube::core::WatchEvent<LenientPod> = serde_json::from_slice(&line)
                .unwrap_or_else(|e| panic!("{e}: the event written is no event: {}", String::from_utf8_lossy(&line)));
            match &event {
                kube::core::WatchEvent::Added(p)
                | kube::core::WatchEvent::Modified(p)
                | kube::core::WatchEvent::Deleted(p) => check(p),
                _ => {}
            }
        }
    }
});
