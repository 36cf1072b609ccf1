//! `audit -o inventory`: one row per workload and sidecar — its product, how it was
//! identified, the versions its Pods run with their counts, what it requests and is limited
//! to over the workload's live Pods (the sidecar tax, as `sidecar_resource_*` exports it),
//! and the alerts firing on it. The answer to "which workloads still run the old proxy" after
//! a mesh upgrade or a CVE fix, and to "what do the sidecars cost".

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::{Finding, Inventory, PodSidecars};
use crate::api::escape_control;
use crate::engine::{AlertName, AlertState, CatalogId, ContainerResources, IdentifiedBy, ResourceAmounts};

/// One workload's sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct InventoryRow {
    /// The workload's namespace.
    namespace: String,
    /// The workload's kind (`Deployment`…; `Pod` for a Pod without owner).
    workload_kind: String,
    /// The workload's name.
    workload: String,
    /// The sidecar container's name.
    container: String,
    /// The catalog id, or how the sidecar was identified when the catalog does not know it.
    product: String,
    /// How the sidecar was identified: `native`, `names`, `catalog:<id>` or `pattern`; `missing`
    /// for a sidecar the workload's Pods lack (`SidecarMissing`, `pods` 0).
    identified_by: String,
    /// Pods of the workload that run this sidecar.
    pods: usize,
    /// Image version (tag, else digest, else `latest`) → Pods that run it.
    versions: BTreeMap<String, usize>,
    /// `requests` and `limits`, each `cpu` (cores) and `memory` (bytes) summed over the
    /// workload's live Pods; a resource no live Pod's sidecar declares is absent.
    #[serde(flatten)]
    resources: Tax,
    /// Alert name → Pods of the workload where it fires on this sidecar.
    alerts: BTreeMap<String, usize>,
}

type RowKey = (String, String, String, String);

/// The rows of `inventory`'s Pods (templates are not running anything) under the first
/// policy that selects each Pod and identifies the sidecar, with the firing `findings`.
/// `sidecars` are what [`super::audit`] identified per Pod, in `inventory.pods` order.
pub(crate) fn rows(inventory: &Inventory, sidecars: &[PodSidecars], findings: &[Finding]) -> Vec<InventoryRow> {
    let mut rows: BTreeMap<RowKey, InventoryRow> = BTreeMap::new();
    let pods = inventory.pods.iter().map(|a| &a.view).zip(sidecars).filter(|(v, _)| !v.is_template);
    for (pod, pod_sidecars) in pods {
        for &(index, by) in pod_sidecars {
            let Some(container) = pod.containers.get(index) else { continue };
            let (kind, workload) = pod.workload();
            let key = (pod.namespace().to_string(), kind.to_string(), workload.to_string(), container.name.to_string());
            let row = rows.entry(key).or_insert_with(|| InventoryRow {
                namespace: pod.namespace().to_string(),
                workload_kind: kind.to_string(),
                workload: workload.to_string(),
                container: container.name.to_string(),
                product: match (container.catalog, by) {
                    (Some(id), _) | (None, IdentifiedBy::Catalog(id)) => id.to_string(),
                    (None, by) => by.to_string(),
                },
                identified_by: by.to_string(),
                ..InventoryRow::default()
            });
            row.pods += 1;
            if let Some(resources) = container.resources.as_deref().filter(|_| pod.is_live()) {
                row.resources.0.add_times(resources, 1);
            }
            let version = container.version.as_ref().map_or("(no image)", |v| v.as_str());
            *row.versions.entry(version.to_string()).or_default() += 1;
        }
    }
    // An alert counts once per Pod (a Pod fails several checks of one sidecar).
    let mut counted: std::collections::HashSet<(&str, &str, &str, &str)> = std::collections::HashSet::new();
    for finding in findings.iter().filter(|f| f.state == AlertState::Firing && f.kind == "Pod") {
        let once =
            (finding.namespace.as_str(), finding.pod.as_str(), finding.container.as_str(), finding.alertname.as_str());
        if !counted.insert(once) {
            continue;
        }
        let key = (
            finding.namespace.clone(),
            finding.workload_kind.clone(),
            finding.workload.clone(),
            finding.container.clone(),
        );
        // A sidecar the Pods lack has a row of its own: no Pod runs it, the alert says why.
        let missing = finding.alertname == AlertName::SidecarMissing.as_str();
        let row = match rows.get_mut(&key) {
            Some(row) => row,
            None if missing => rows.entry(key).or_insert_with(|| InventoryRow {
                namespace: finding.namespace.clone(),
                workload_kind: finding.workload_kind.clone(),
                workload: finding.workload.clone(),
                container: finding.container.clone(),
                product: CatalogId::recognise(&finding.container, None, false)
                    .map_or_else(|| "required".to_string(), |id| id.to_string()),
                identified_by: "missing".into(),
                ..InventoryRow::default()
            }),
            None => continue,
        };
        *row.alerts.entry(finding.alertname.clone()).or_default() += 1;
    }
    rows.into_values().collect()
}

/// The rows as a table: versions and alerts as `name×count`, most Pods first.
pub(crate) fn render(rows: &[InventoryRow]) -> String {
    let counted = |map: &BTreeMap<String, usize>| -> String {
        if map.is_empty() {
            return "-".into();
        }
        let mut items: Vec<(&String, &usize)> = map.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        items.iter().map(|(name, n)| format!("{}×{n}", escape_control(name))).collect::<Vec<_>>().join(", ")
    };
    let table: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                escape_control(&r.namespace).into_owned(),
                escape_control(&format!("{}/{}", r.workload_kind, r.workload)).into_owned(),
                escape_control(&r.container).into_owned(),
                escape_control(&r.product).into_owned(),
                r.pods.to_string(),
                counted(&r.versions),
                amounts_text(&r.resources.0.requests),
                amounts_text(&r.resources.0.limits),
                counted(&r.alerts),
            ]
        })
        .collect();
    let header = ["NAMESPACE", "WORKLOAD", "SIDECAR", "PRODUCT", "PODS", "VERSIONS", "REQUESTS", "LIMITS", "ALERTS"]
        .map(String::from);
    // A cell longer than any name the API server admits (a hand-written manifest's) is
    // printed whole but unaligned, as in the findings' table.
    let widths = super::output::column_widths(header.each_ref().map(|h| h.chars().count()), &table);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&table) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let workloads: std::collections::BTreeSet<(&str, &str, &str)> =
        rows.iter().map(|r| (r.namespace.as_str(), r.workload_kind.as_str(), r.workload.as_str())).collect();
    let _ = writeln!(out, "{} sidecars in {} workloads", rows.len(), workloads.len());
    out
}

/// A row's sidecar tax, serialized as `requests` and `limits`, each a map of `cpu` (cores)
/// and `memory` (bytes) with only the resources declared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tax(ContainerResources);

impl Serialize for Tax {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// One `requests` or `limits` map.
        struct Amounts<'a>(&'a ResourceAmounts);
        impl Serialize for Amounts<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                if let Some(millis) = self.0.cpu_millis {
                    // Cores, as the metric: exact to the millicore below 2^53.
                    #[allow(clippy::cast_precision_loss)]
                    map.serialize_entry("cpu", &(millis as f64 / 1000.0))?;
                }
                if let Some(bytes) = self.0.memory_bytes {
                    map.serialize_entry("memory", &bytes)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("requests", &Amounts(&self.0.requests))?;
        map.serialize_entry("limits", &Amounts(&self.0.limits))?;
        map.end()
    }
}

/// `cpu 300m, memory 192Mi` as `kubectl` writes quantities (whole cores without `m`, memory
/// in the largest binary unit that divides it); `-` when neither is declared.
fn amounts_text(amounts: &ResourceAmounts) -> String {
    let cpu = amounts.cpu_millis.map(|m| if m % 1000 == 0 { format!("cpu {}", m / 1000) } else { format!("cpu {m}m") });
    let memory = amounts.memory_bytes.map(|bytes| {
        let (value, unit) = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].iter().fold((bytes, ""), |(v, u), next| {
            if v != 0 && v % 1024 == 0 {
                (v / 1024, next)
            } else {
                (v, u)
            }
        });
        format!("memory {value}{unit}")
    });
    let parts: Vec<String> = cpu.into_iter().chain(memory).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}
