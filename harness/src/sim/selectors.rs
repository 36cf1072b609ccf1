//! Label and field selectors.

use serde_json::Value;

use super::error::{ApiError, ApiResult};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Eq(String, String),
    /// `key!=value`.
    NotEq(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

fn parse_set(s: &str) -> ApiResult<Vec<String>> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: found '{s}', expected: '('")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            if let Some(key) = part.strip_prefix('!') {
                reqs.push(Requirement::NotExists(key.trim().to_string()));
            } else if let Some((k, v)) = part.split_once("!=") {
                reqs.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once("==") {
                reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once('=') {
                reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
            } else if let Some(idx) = part.find(" notin ").or_else(|| part.find(" notin(")) {
                let key = part[..idx].trim().to_string();
                reqs.push(Requirement::NotIn(key, parse_set(&part[idx + 6..])?));
            } else if let Some(idx) = part.find(" in ").or_else(|| part.find(" in(")) {
                let key = part[..idx].trim().to_string();
                reqs.push(Requirement::In(key, parse_set(&part[idx + 3..])?));
            } else if part.contains(' ') || part.contains('(') {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {part:?}")));
            } else {
                reqs.push(Requirement::Exists(part));
            }
        }
        Ok(Self(reqs))
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: `path=value` / `path==value` / `path!=value` terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` syntax; any dotted field path is accepted.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: {part:?}")));
            };
            terms.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(Self(terms))
    }

    /// Whether the object satisfies all terms (a missing field compares as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "a", "tier": "web"});
        let l = labels.as_object();
        for (sel, want) in [
            ("app=a", true),
            ("app==a,tier=web", true),
            ("app!=a", false),
            ("app in (a, b)", true),
            ("app notin (a,b)", false),
            ("tier,!missing", true),
            ("missing", false),
            ("!app", false),
            ("env notin (prod)", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(l), want, "{sel}");
        }
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns"}});
        assert!(FieldSelector::parse("metadata.name=x,metadata.namespace==ns").unwrap().matches(&obj));
        assert!(!FieldSelector::parse("metadata.name!=x").unwrap().matches(&obj));
    }
}
