//! Which containers a policy calls sidecars, and how each was recognised: how it is declared,
//! the names the policy lists, the built-in catalog, or the policy's pattern (`spec.sidecars`).

use std::fmt;

use regex::Regex;

use super::catalog::CatalogId;
use super::pod::{ContainerKind, ContainerView, PodView};
use super::rule_settings::SpecError;
use super::version::Release;
use sidecar_watch_api::bounds::{MAX_CONTAINER_NAME_CHARS, MAX_PATTERN_CHARS, MAX_SIDECAR_NAMES};
use sidecar_watch_api::{quote, SidecarSelector};

/// The sidecar name pattern used when a policy does not say which containers are sidecars.
pub const DEFAULT_SIDECAR_PATTERN: &str = ".*-sidecar|istio-proxy|envoy";

/// How a sidecar is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SidecarType {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// A regular container recognised by name or pattern.
    Legacy,
}

impl SidecarType {
    /// The type a sidecar declared as `kind` has; `None` for a plain init container, which
    /// never is one.
    pub fn of(kind: ContainerKind) -> Option<SidecarType> {
        match kind {
            ContainerKind::Init => None,
            ContainerKind::RestartableInit => Some(SidecarType::Native),
            ContainerKind::Regular => Some(SidecarType::Legacy),
        }
    }

    /// The value of the `sidecar_type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarType::Native => "native",
            SidecarType::Legacy => "legacy",
        }
    }
}

/// How a container was recognised as a sidecar (`identified_by` in `audit`). When several
/// apply, the first in this order is reported: how it is declared, then what the policy
/// names explicitly, then the catalog, then the catch-all pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentifiedBy {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// Listed in `spec.sidecars.names`.
    Names,
    /// An entry of the built-in catalog.
    Catalog(CatalogId),
    /// Matched by `spec.sidecars.pattern`.
    Pattern,
}

impl fmt::Display for IdentifiedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifiedBy::Native => f.write_str("native"),
            IdentifiedBy::Names => f.write_str("names"),
            IdentifiedBy::Catalog(id) => write!(f, "catalog:{id}"),
            IdentifiedBy::Pattern => f.write_str("pattern"),
        }
    }
}

/// A sidecar: how it is declared and how it was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identified {
    /// Native or legacy.
    pub kind: SidecarType,
    /// What recognised it.
    pub by: IdentifiedBy,
}

/// A policy's `spec.sidecars`, compiled.
#[derive(Clone, Debug)]
pub(crate) struct SidecarMatcher {
    /// Init containers with `restartPolicy: Always` are sidecars.
    native: bool,
    /// Well-known sidecars of the built-in catalog are.
    catalog: bool,
    /// Containers of these names are.
    names: Vec<String>,
    /// Containers whose whole name this matches are.
    pattern: Option<Regex>,
    /// Catalog ids or container names every selected Pod must run (`SidecarMissing`).
    required: Vec<String>,
    /// Per catalog id or container name, the oldest release allowed (`SidecarVersionDrift`).
    minimum_versions: Vec<(String, Release)>,
}

/// `spec.sidecars.minimumVersions`, each a release ([`Release::parse`]); errors name the key.
fn compile_minimum_versions(spec: Option<&SidecarSelector>) -> Result<Vec<(String, Release)>, SpecError> {
    const FIELD: &str = "spec.sidecars.minimumVersions";
    let Some(versions) = spec.map(|s| &s.minimum_versions) else { return Ok(Vec::new()) };
    SpecError::check_size(FIELD, "entries", versions.len(), MAX_SIDECAR_NAMES)?;
    let mut compiled = Vec::with_capacity(versions.len());
    for (key, version) in versions {
        if key.is_empty() {
            return Err(SpecError::new(FIELD, "an empty catalog id or container name"));
        }
        let field = format!("{FIELD}.{}", sidecar_watch_api::clip(key));
        SpecError::check_size(&field, "characters", key.chars().count(), MAX_CONTAINER_NAME_CHARS)?;
        let release = Release::parse(version).ok_or_else(|| {
            SpecError::new(&field, format!("{} is not a release such as 1.25 or 1.25.2", quote(version)))
        })?;
        compiled.push((key.clone(), release));
    }
    Ok(compiled)
}

impl SidecarMatcher {
    /// Compiles `spec.sidecars`; every default (native, catalog, [`DEFAULT_SIDECAR_PATTERN`])
    /// when the policy does not say. Errors name the offending field.
    pub(crate) fn compile(spec: Option<&SidecarSelector>) -> Result<SidecarMatcher, SpecError> {
        let (native, catalog, names, pattern, required) = match spec {
            None => (true, true, Vec::new(), Some(DEFAULT_SIDECAR_PATTERN.to_string()), Vec::new()),
            Some(s) => (s.native, s.catalog, s.names.clone(), s.pattern.clone(), s.required.clone()),
        };
        let minimum_versions = compile_minimum_versions(spec)?;
        for (field, list) in [("spec.sidecars.names", &names), ("spec.sidecars.required", &required)] {
            SpecError::check_size(field, "names", list.len(), MAX_SIDECAR_NAMES)?;
            for (i, name) in list.iter().enumerate() {
                let field = format!("{field}[{i}]");
                if name.is_empty() {
                    return Err(SpecError::new(field, "empty container name"));
                }
                SpecError::check_size(&field, "characters", name.chars().count(), MAX_CONTAINER_NAME_CHARS)?;
            }
        }
        if let Some(pattern) = &pattern {
            SpecError::check_size("spec.sidecars.pattern", "characters", pattern.chars().count(), MAX_PATTERN_CHARS)?;
        }
        let pattern = pattern.as_deref().map(anchored_pattern).transpose()?;
        if !native && !catalog && names.is_empty() && pattern.is_none() {
            return Err(SpecError::new(
                "spec.sidecars",
                "selects no container: set native: true, catalog: true, names or pattern",
            ));
        }
        Ok(SidecarMatcher { native, catalog, names, pattern, required, minimum_versions })
    }

    /// Whether the catalog may name sidecars among the Pod's regular containers: only when
    /// one of them is not in the catalog, so the proxy of an ingress gateway or a standalone
    /// Envoy (the Pod's only job) is a main container, not a sidecar of nothing.
    pub(crate) fn catalog_applies(&self, pod: &PodView) -> bool {
        self.catalog && pod.containers.iter().any(|c| c.kind == ContainerKind::Regular && c.catalog.is_none())
    }

    /// Whether the container is a sidecar, of which type and recognised how; `catalog_applies`
    /// comes from [`Self::catalog_applies`] for the container's Pod. Plain init containers
    /// never are.
    pub(crate) fn identify(&self, container: &ContainerView, catalog_applies: bool) -> Option<Identified> {
        let kind = SidecarType::of(container.kind)?;
        let by = if kind == SidecarType::Native && self.native {
            IdentifiedBy::Native
        } else if self.names.iter().any(|n| container.name == *n) {
            IdentifiedBy::Names
        } else if let Some(id) =
            container.catalog.filter(|_| self.catalog && (catalog_applies || kind == SidecarType::Native))
        {
            IdentifiedBy::Catalog(id)
        } else if self.pattern.as_ref().is_some_and(|p| p.is_match(&container.name)) {
            IdentifiedBy::Pattern
        } else {
            return None;
        };
        Some(Identified { kind, by })
    }

    /// Catalog ids or container names every selected Pod must run.
    pub(crate) fn required(&self) -> &[String] {
        &self.required
    }

    /// The oldest release allowed for a sidecar of this catalog id or container name, with the
    /// key that set it.
    pub(crate) fn minimum_version(&self, container: &ContainerView) -> Option<(&str, Release)> {
        self.minimum_versions
            .iter()
            .find(|(key, _)| container.catalog.is_some_and(|id| id.entry().id == key) || container.name == **key)
            .map(|(key, release)| (key.as_str(), *release))
    }

    /// Whether `other` recognises exactly the same containers.
    pub(crate) fn same_as(&self, other: &SidecarMatcher) -> bool {
        self.native == other.native
            && self.catalog == other.catalog
            && self.names == other.names
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
    }

    /// The Pod's sidecars, in container order: (index, container, how).
    pub(crate) fn sidecars<'a>(
        &'a self,
        pod: &'a PodView,
    ) -> impl Iterator<Item = (usize, &'a ContainerView, Identified)> + 'a {
        let catalog_applies = self.catalog_applies(pod);
        pod.containers.iter().enumerate().filter_map(move |(i, c)| Some((i, c, self.identify(c, catalog_applies)?)))
    }
}

/// The user's pattern compiled on its own first, so that no pattern can close the anchoring
/// group early (`x)|(` would otherwise become `^(?:x)|()$`, which matches every name), then
/// anchored to match whole names.
fn anchored_pattern(pattern: &str) -> Result<Regex, SpecError> {
    let invalid = |e: regex::Error| {
        SpecError::new(
            "spec.sidecars.pattern",
            format!("invalid regular expression {}: {}", quote(pattern), reason(&e)),
        )
    };
    Regex::new(pattern).map_err(invalid)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)
}

/// What is wrong with a pattern, without the pattern: the regex crate's syntax errors print
/// it whole with a caret under the fault, then the reason on a line `error: …` of their own
/// (the pattern's lines are indented, so a pattern cannot forge that line).
fn reason(error: &regex::Error) -> String {
    let text = error.to_string();
    match text.lines().rev().find_map(|l| l.strip_prefix("error: ")) {
        Some(reason) => reason.trim().to_string(),
        None => text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerSpec;

    fn compile(sidecars: SidecarSelector) -> Result<SidecarMatcher, SpecError> {
        SidecarMatcher::compile(Some(&sidecars))
    }

    fn view(name: &str, kind: ContainerKind) -> ContainerView {
        let catalog = crate::catalog::CatalogId::recognise(name, None, false);
        let spec = ContainerSpec {
            name: name.into(),
            kind,
            flags: Default::default(),
            catalog,
            liveness_target: None,
            version: None,
            resources: None,
        };
        ContainerView::new(spec, None)
    }

    fn identified_by(matcher: &SidecarMatcher, name: &str, kind: ContainerKind) -> Option<String> {
        matcher.identify(&view(name, kind), true).map(|i| i.by.to_string())
    }

    #[test]
    fn defaults_are_native_sidecars_the_catalog_and_the_default_pattern() {
        let matcher = SidecarMatcher::compile(None).unwrap();
        assert!(matcher.native && matcher.catalog && matcher.names.is_empty());
        assert_eq!(matcher.pattern.as_ref().map(Regex::as_str), Some("^(?:.*-sidecar|istio-proxy|envoy)$"));
    }

    #[test]
    fn pattern_matches_whole_names_only() {
        let matcher = SidecarMatcher::compile(None).unwrap();
        let kind = |name, k| matcher.identify(&view(name, k), true).map(|i| i.kind);
        assert_eq!(kind("envoy", ContainerKind::Regular), Some(SidecarType::Legacy));
        assert_eq!(kind("log-sidecar", ContainerKind::Regular), Some(SidecarType::Legacy));
        assert_eq!(kind("envoy-config", ContainerKind::Regular), None);
        assert_eq!(kind("app", ContainerKind::Regular), None);
        assert_eq!(kind("envoy", ContainerKind::Init), None);
        assert_eq!(kind("anything", ContainerKind::RestartableInit), Some(SidecarType::Native));
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchors() {
        for escaping in ["nomatch)|(", "x)|(?:y", ")|("] {
            let error =
                compile(SidecarSelector { pattern: Some(escaping.into()), ..Default::default() }).expect_err(escaping);
            assert_eq!(error.field, "spec.sidecars.pattern", "{escaping}");
        }
    }

    #[test]
    fn identification_reports_declaration_then_names_then_catalog_then_pattern() {
        let matcher = compile(SidecarSelector {
            names: vec!["istio-proxy".into()],
            pattern: Some(".*-sidecar|linkerd-proxy".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(identified_by(&matcher, "linkerd-proxy", ContainerKind::RestartableInit).as_deref(), Some("native"));
        assert_eq!(identified_by(&matcher, "istio-proxy", ContainerKind::Regular).as_deref(), Some("names"));
        assert_eq!(
            identified_by(&matcher, "linkerd-proxy", ContainerKind::Regular).as_deref(),
            Some("catalog:linkerd")
        );
        assert_eq!(identified_by(&matcher, "log-sidecar", ContainerKind::Regular).as_deref(), Some("pattern"));
        assert_eq!(identified_by(&matcher, "app", ContainerKind::Regular), None);
        // With the catalog off, only the pattern is left for linkerd-proxy.
        let no_catalog =
            compile(SidecarSelector { catalog: false, pattern: Some("linkerd-proxy".into()), ..Default::default() })
                .unwrap();
        assert_eq!(identified_by(&no_catalog, "linkerd-proxy", ContainerKind::Regular).as_deref(), Some("pattern"));
    }
}
