//! How much one policy may say: the sizes its CRD schema declares (so that the API server
//! refuses a larger policy at once) and the operator checks again, naming the field, for a
//! policy that arrives without them (an older CRD, a server without the schema, an
//! `audit --policy` file).
//!
//! Each bound is far above what a real policy needs and far below what would cost the
//! operator: every string is compiled or compared per container, so a 1.5 MB pattern or
//! 20,000 names would be paid for on every Pod the policy selects. The one CEL rule of the
//! CRD (`sidecars` selects something) costs the same whatever the sizes.

/// `spec.sidecars.pattern`: a regular expression over container names.
pub const MAX_PATTERN_CHARS: usize = 1024;
/// `spec.sidecars.names`: entries.
pub const MAX_SIDECAR_NAMES: usize = 64;
/// One container name (`spec.sidecars.names[]`): a DNS label, as the Pod API allows.
pub const MAX_CONTAINER_NAME_CHARS: usize = 63;
/// A `for` or `window` duration (`1h30m`).
pub const MAX_DURATION_CHARS: usize = 32;
/// Characters of a release in `spec.sidecars.minimumVersions` (`1.25.2`).
pub const MAX_RELEASE_CHARS: usize = 32;
/// `matchLabels` entries of a selector.
pub const MAX_MATCH_LABELS: usize = 32;
/// `matchExpressions` entries of a selector.
pub const MAX_MATCH_EXPRESSIONS: usize = 32;
/// `values` of one `matchExpressions` entry.
pub const MAX_EXPRESSION_VALUES: usize = 64;
/// A label key: an optional DNS-subdomain prefix (253), `/`, and a name (63).
pub const MAX_LABEL_KEY_CHARS: usize = 317;
/// A label value.
pub const MAX_LABEL_VALUE_CHARS: usize = 63;
/// `status.conditions` entries (the operator writes one).
pub const MAX_CONDITIONS: usize = 8;
/// `status.firing` entries: one per alert name at most.
pub const MAX_FIRING_NAMES: usize = 16;
/// `status.shards` entries, and so the largest `--shard-count`.
pub const MAX_SHARDS: usize = 1024;
