//! Label and field selectors as the real API parses them from `labelSelector` and `fieldSelector`.
//!
//! Label selectors support `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) and
//! `!k` (does not exist). Field selectors support `path=v`, `path==v` and `path!=v` on any dotted
//! path of the object (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`, ...);
//! a missing field compares as the empty string. (The real API only accepts a per-kind list of
//! field paths; this server accepts any path.)

use std::collections::BTreeSet;

use serde_json::Value;

use crate::status::ApiError;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value` (also matches objects without the label).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)` (also matches objects without the label).
    NotIn(String, BTreeSet<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str, whole: &str) -> Result<BTreeSet<String>, ApiError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {whole:?}: expected a parenthesised value set"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn check_key(key: &str, whole: &str) -> Result<String, ApiError> {
    let key = key.trim();
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: {whole:?}: invalid label key {key:?}"
        )))
    }
}

impl LabelSelector {
    /// Parses a `labelSelector` query value; an empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let p = part.as_str();
            if let Some(key) = p.strip_prefix('!') {
                reqs.push(LabelRequirement::DoesNotExist(check_key(key, p)?));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(LabelRequirement::NotEquals(
                    check_key(k, p)?,
                    v.trim().to_string(),
                ));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(LabelRequirement::Equals(
                    check_key(k, p)?,
                    v.trim().to_string(),
                ));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(LabelRequirement::Equals(
                    check_key(k, p)?,
                    v.trim().to_string(),
                ));
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                reqs.push(LabelRequirement::NotIn(
                    check_key(k, p)?,
                    parse_set(rest, p)?,
                ));
            } else if let Some((k, rest)) = p.split_once(" in ") {
                reqs.push(LabelRequirement::In(check_key(k, p)?, parse_set(rest, p)?));
            } else {
                reqs.push(LabelRequirement::Exists(check_key(p, p)?));
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// `true` when the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, set) => get(k).is_some_and(|x| set.contains(x)),
            LabelRequirement::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted path, e.g. `metadata.name`.
    pub path: String,
    /// `true` for `!=`.
    pub negated: bool,
    /// Compared value.
    pub value: String,
}

/// A parsed field selector: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses a `fieldSelector` query value; an empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let (path, negated, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {part:?}: expected <path>=<value>, <path>==<value> or <path>!=<value>"
                )));
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {part:?}: empty field path"
                )));
            }
            reqs.push(FieldRequirement {
                path: path.to_string(),
                negated,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// The `metadata.name=<x>` requirement if present (used to narrow watches to one object).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.path == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// `true` when every requirement holds for the object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = field_value(obj, &r.path);
            (actual == r.value) != r.negated
        })
    }
}

/// The string form of the value at a dotted path; missing fields are the empty string.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
