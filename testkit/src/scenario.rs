//! The seed scenarios: one Pod each, as `kubectl get pod -o yaml` printed it, in
//! `tests/fixtures/` (their header comments list the alerts each raises at
//! [`Scenario::NOW`]). One named constant per scenario, so that a test names a scenario the
//! compiler knows rather than a file name, and a table test can walk [`Scenario::ALL`].

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A seed scenario: a Pod fixture of `tests/fixtures/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// (a) A native sidecar whose readiness probe never passes beside a ready main container.
    NeverReadySidecar,
    /// (b) A native log shipper failing its liveness probe, in `CrashLoopBackOff`.
    CrashloopingSidecar,
    /// (c) A CronJob's Pod whose legacy Istio sidecar keeps running after the job finished.
    JobBlockedBySidecar,
    /// (d) A healthy mesh Pod: a native `istio-proxy` with probes, resources, a pinned image.
    HealthyMesh,
    /// (e) Regular init containers, never sidecars whatever their names.
    InitContainerNotSidecar,
    /// (f) A native `istio-proxy` and a legacy `log-sidecar` failing its readiness probe.
    TwoSidecars,
    /// (g) A Pod selected by two policies (with `tests/fixtures/two-policies-policy.yaml`).
    TwoPolicies,
    /// (h) A native OpenTelemetry agent OOM-killed and running again.
    OomkilledSidecar,
    /// (i) A native `envoy` without a startup probe: the main container started first.
    StartupOrder,
    /// (j) A terminating Pod whose legacy Istio sidecar stopped before the app.
    ShutdownOrder,
    /// (k) Every static check: five sidecars, each misconfigured its own way.
    MisconfiguredSidecars,
    /// An init container that needs the network runs before a native mesh proxy.
    InitBeforeProxy,
    /// (l) A Pod annotated for Linkerd's injection that runs without `linkerd-proxy`.
    MissingSidecar,
}

impl Scenario {
    /// The instant every scenario is meant to be evaluated at.
    pub const NOW: &'static str = "2025-06-03T10:30:00Z";

    /// Every scenario, in the order of the seed's letters.
    pub const ALL: [Scenario; 13] = [
        Scenario::NeverReadySidecar,
        Scenario::CrashloopingSidecar,
        Scenario::JobBlockedBySidecar,
        Scenario::HealthyMesh,
        Scenario::InitContainerNotSidecar,
        Scenario::TwoSidecars,
        Scenario::TwoPolicies,
        Scenario::OomkilledSidecar,
        Scenario::StartupOrder,
        Scenario::ShutdownOrder,
        Scenario::MisconfiguredSidecars,
        Scenario::InitBeforeProxy,
        Scenario::MissingSidecar,
    ];

    /// The fixture's file name in `tests/fixtures/`.
    pub fn file(self) -> &'static str {
        match self {
            Scenario::NeverReadySidecar => "never-ready-sidecar.yaml",
            Scenario::CrashloopingSidecar => "crashlooping-sidecar.yaml",
            Scenario::JobBlockedBySidecar => "job-blocked-by-sidecar.yaml",
            Scenario::HealthyMesh => "healthy-mesh.yaml",
            Scenario::InitContainerNotSidecar => "init-container-not-sidecar.yaml",
            Scenario::TwoSidecars => "two-sidecars.yaml",
            Scenario::TwoPolicies => "two-policies.yaml",
            Scenario::OomkilledSidecar => "oomkilled-sidecar.yaml",
            Scenario::StartupOrder => "startup-order.yaml",
            Scenario::ShutdownOrder => "shutdown-order.yaml",
            Scenario::MisconfiguredSidecars => "misconfigured-sidecars.yaml",
            Scenario::InitBeforeProxy => "init-before-proxy.yaml",
            Scenario::MissingSidecar => "missing-sidecar.yaml",
        }
    }

    /// The path of the fixture from the workspace root, as a user passes it to `audit -f`.
    pub fn path(self) -> String {
        format!("tests/fixtures/{}", self.file())
    }

    /// The fixture's text, header comment included (built in: no file is read at run time).
    pub fn yaml(self) -> &'static str {
        match self {
            Scenario::NeverReadySidecar => include_str!("../../tests/fixtures/never-ready-sidecar.yaml"),
            Scenario::CrashloopingSidecar => include_str!("../../tests/fixtures/crashlooping-sidecar.yaml"),
            Scenario::JobBlockedBySidecar => include_str!("../../tests/fixtures/job-blocked-by-sidecar.yaml"),
            Scenario::HealthyMesh => include_str!("../../tests/fixtures/healthy-mesh.yaml"),
            Scenario::InitContainerNotSidecar => include_str!("../../tests/fixtures/init-container-not-sidecar.yaml"),
            Scenario::TwoSidecars => include_str!("../../tests/fixtures/two-sidecars.yaml"),
            Scenario::TwoPolicies => include_str!("../../tests/fixtures/two-policies.yaml"),
            Scenario::OomkilledSidecar => include_str!("../../tests/fixtures/oomkilled-sidecar.yaml"),
            Scenario::StartupOrder => include_str!("../../tests/fixtures/startup-order.yaml"),
            Scenario::ShutdownOrder => include_str!("../../tests/fixtures/shutdown-order.yaml"),
            Scenario::MisconfiguredSidecars => include_str!("../../tests/fixtures/misconfigured-sidecars.yaml"),
            Scenario::InitBeforeProxy => include_str!("../../tests/fixtures/init-before-proxy.yaml"),
            Scenario::MissingSidecar => include_str!("../../tests/fixtures/missing-sidecar.yaml"),
        }
    }

    /// The Pod as JSON.
    pub fn pod(self) -> Value {
        self.decode()
    }

    /// The Pod decoded as `T` (the operator's `SlimPod`, k8s-openapi's `Pod`).
    ///
    /// # Panics
    /// When the fixture does not decode as `T`, naming the file: a test's setup is wrong.
    pub fn decode<T: DeserializeOwned>(self) -> T {
        serde_norway::from_str(self.yaml()).unwrap_or_else(|e| panic!("fixture {}: {e}", self.file()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_a_named_pod_of_its_own() {
        let mut names = std::collections::HashSet::new();
        for scenario in Scenario::ALL {
            let pod = scenario.pod();
            assert_eq!(pod["kind"], "Pod", "{}", scenario.file());
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            assert!(names.insert(name), "{}: a second Pod of that name", scenario.file());
            assert!(crate::workspace_root().join(scenario.path()).is_file(), "{}", scenario.path());
        }
    }
}
