//! CustomResourceDefinitions of every kind in [`crate::cstor`] and [`crate::ndm`], generated
//! from the Rust types' schemars schemas and rewritten into Kubernetes structural form.
//!
//! The CRDs match upstream's names, short names, scope and printer columns and, like
//! upstream, declare **no status subresource**: the Go operators write status with a plain
//! update of the whole object, which a `/status` subresource would silently discard.
//!
//! `cargo run --bin crdgen` writes them to `deploy/crds/`; a test fails when the committed
//! files drift from what this module produces.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
        CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceValidation,
        JSONSchemaProps,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::{Map, Value};

use crate::{cstor, migration, ndm, upgrade};

/// A printer column (`additionalPrinterColumns` entry) of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: &'static str,
    /// OpenAPI type of the column (`string`, `integer`, `boolean`, `date`).
    pub type_: &'static str,
    /// JSONPath of the value.
    pub json_path: &'static str,
    /// Description (`""` for none).
    pub description: &'static str,
    /// Priority (`Some(1)` hides the column unless `-o wide`).
    pub priority: Option<i32>,
}

/// What a kind needs, beyond [`kube::Resource`] and its schema, to produce its CRD.
/// Implemented by the `custom_resource!` macro for every root type.
pub trait CrdInfo: kube::Resource<DynamicType = ()> + JsonSchema {
    /// Singular resource name.
    const SINGULAR: &'static str;
    /// Short names (`cspc`, ...).
    const SHORT_NAMES: &'static [&'static str];
    /// Categories (none upstream).
    const CATEGORIES: &'static [&'static str];
    /// Printer columns, in upstream order.
    const PRINTER_COLUMNS: &'static [PrinterColumn];
}

/// Directory the generated CRD files live in (`deploy/crds` of this repository).
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crds");

/// The CRDs of every kind, cStor kinds first, in a fixed order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        crd_for::<cstor::CStorPoolCluster>(),
        crd_for::<cstor::CStorPoolInstance>(),
        crd_for::<cstor::CStorVolumeConfig>(),
        crd_for::<cstor::CStorVolume>(),
        crd_for::<cstor::CStorVolumeReplica>(),
        crd_for::<cstor::CStorVolumePolicy>(),
        crd_for::<cstor::CStorVolumeAttachment>(),
        crd_for::<cstor::CStorSnapshotRecord>(),
        crd_for::<cstor::CStorBackup>(),
        crd_for::<cstor::CStorRestore>(),
        crd_for::<cstor::CStorCompletedBackup>(),
        crd_for::<ndm::BlockDevice>(),
        crd_for::<ndm::BlockDeviceClaim>(),
        crd_for::<migration::MigrationTask>(),
        crd_for::<upgrade::UpgradeTask>(),
    ]
}

/// The CRD of one kind.
pub fn crd_for<K: CrdInfo>() -> CustomResourceDefinition {
    let group = K::group(&()).into_owned();
    let plural = K::plural(&()).into_owned();
    let kind = K::kind(&()).into_owned();
    let columns: Vec<CustomResourceColumnDefinition> = K::PRINTER_COLUMNS
        .iter()
        .map(|c| CustomResourceColumnDefinition {
            name: c.name.to_owned(),
            type_: c.type_.to_owned(),
            json_path: c.json_path.to_owned(),
            description: (!c.description.is_empty()).then(|| c.description.to_owned()),
            priority: c.priority,
            format: None,
        })
        .collect();
    let non_empty = |v: &[&str]| -> Option<Vec<String>> {
        (!v.is_empty()).then(|| v.iter().map(|s| (*s).to_owned()).collect())
    };
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{plural}.{group}")),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group,
            names: CustomResourceDefinitionNames {
                kind: kind.clone(),
                list_kind: Some(format!("{kind}List")),
                plural,
                singular: Some(K::SINGULAR.to_owned()),
                short_names: non_empty(K::SHORT_NAMES),
                categories: non_empty(K::CATEGORIES),
            },
            scope: "Namespaced".to_owned(),
            versions: vec![CustomResourceDefinitionVersion {
                name: K::version(&()).into_owned(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(structural_schema::<K>()),
                }),
                additional_printer_columns: (!columns.is_empty()).then_some(columns),
                // Deliberately no status subresource (see the module docs).
                subresources: None,
                deprecated: None,
                deprecation_warning: None,
                selectable_fields: None,
            }],
            conversion: None,
            preserve_unknown_fields: None,
        },
        status: None,
    }
}

/// The structural OpenAPI v3 schema of `K`.
///
/// # Panics
/// If the rewritten schema is not structural (a bug in the types, caught by the tests).
pub fn structural_schema<K: JsonSchema>() -> JSONSchemaProps {
    let value = structural_schema_value::<K>();
    let problems = structural_problems(&value);
    assert!(
        problems.is_empty(),
        "schema of {} is not structural: {problems:?}",
        K::schema_name()
    );
    serde_json::from_value(value).expect("a structural schema is valid JSONSchemaProps")
}

/// The structural schema of `K` as JSON (what [`structural_schema`] converts).
pub fn structural_schema_value<K: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = generator.into_root_schema_for::<K>().to_value();
    make_structural(&mut value);
    value
}

/// Keys schemars may emit that a CRD schema must not carry (or that would make it stricter
/// than upstream's): server-side defaults, unsigned-integer bounds, JSON-Schema-only keys.
const DROPPED_KEYS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "definitions",
    "title",
    "default",
    "examples",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
    "const",
    "minimum",
    "maximum",
];

/// Rewrites a schemars (OpenAPI 3 dialect) schema into Kubernetes structural form in place:
/// `Option` wrappers (`anyOf [T, null]`, `type [T, null]`) become `T` + `nullable: true`,
/// JSON-Schema-only keys and defaults are dropped, unsigned formats become signed ones, and
/// `additionalProperties: true|false` become `x-kubernetes-preserve-unknown-fields` / nothing.
pub fn make_structural(value: &mut Value) {
    let Value::Object(node) = value else {
        return;
    };
    for key in DROPPED_KEYS {
        node.remove(*key);
    }

    if let Some(Value::Array(branches)) = node.remove("anyOf") {
        let (nulls, mut others): (Vec<Value>, Vec<Value>) =
            branches.into_iter().partition(is_null_schema);
        if others.len() == 1 {
            if let Value::Object(inner) = others.remove(0) {
                for (k, v) in inner {
                    // The outer node's own keys (the field's description) win.
                    node.entry(k).or_insert(v);
                }
            }
        } else if !others.is_empty() {
            node.insert("anyOf".into(), Value::Array(others));
        }
        if !nulls.is_empty() {
            node.insert("nullable".into(), Value::Bool(true));
        }
        // Merged keys may themselves need dropping.
        for key in DROPPED_KEYS {
            node.remove(*key);
        }
    }

    if let Some(Value::Array(types)) = node.get("type").cloned() {
        let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if non_null.len() != types.len() {
            node.insert("nullable".into(), Value::Bool(true));
        }
        if non_null.len() == 1 {
            node.insert("type".into(), non_null[0].clone());
        }
    }

    // k8s-openapi's Quantity carries a page of prose; repeated under every resource map it
    // would dwarf the rest of the CRD (upstream's CRDs omit it too).
    if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && node
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("Quantity is a fixed-point representation"))
    {
        node.remove("description");
    }

    if let Some(Value::String(format)) = node.get("format") {
        let signed = match format.as_str() {
            "uint8" | "uint16" | "int8" | "int16" => Some("int32"),
            "uint" | "uint32" | "uint64" | "int" => Some("int64"),
            _ => None,
        };
        if let Some(signed) = signed {
            node.insert("format".into(), Value::String(signed.into()));
        }
    }

    match node.get("additionalProperties") {
        Some(Value::Bool(true)) => {
            node.remove("additionalProperties");
            node.insert(
                "x-kubernetes-preserve-unknown-fields".into(),
                Value::Bool(true),
            );
        }
        Some(Value::Bool(false)) => {
            node.remove("additionalProperties");
        }
        _ => {}
    }

    if let Some(Value::Object(properties)) = node.get_mut("properties") {
        for property in properties.values_mut() {
            make_structural(property);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get_mut(key) {
            make_structural(child);
        }
    }
    if node
        .get("required")
        .is_some_and(|r| r.as_array().is_some_and(Vec::is_empty))
    {
        node.remove("required");
    }
}

fn is_null_schema(schema: &Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    map.get("type").is_some_and(|t| t == "null")
        || (map.get("nullable") == Some(&Value::Bool(true))
            && map.get("const").is_some_and(Value::is_null)
            && !map.contains_key("type"))
}

/// Everything that makes `schema` non-structural in Kubernetes' sense, as
/// `<json path>: <problem>` strings (empty when the schema is structural): a `$ref`, a node
/// without `type` (unless it is int-or-string or preserves unknown fields), type arrays,
/// `anyOf`/`oneOf`/`allOf`/`not` carrying types, `additionalProperties` next to `properties`.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk_structural(schema, "", &mut problems);
    problems
}

fn walk_structural(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let at = if path.is_empty() { "." } else { path };
    let Value::Object(node) = schema else {
        problems.push(format!("{at}: schema is not an object"));
        return;
    };
    for key in ["$ref", "definitions", "$defs", "$schema", "const"] {
        if node.contains_key(key) {
            problems.push(format!("{at}: has `{key}`"));
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        if node.contains_key(key) {
            problems.push(format!("{at}: has `{key}` (only allowed without types)"));
        }
    }
    let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match node.get("type") {
        Some(Value::String(t)) => {
            if int_or_string {
                problems.push(format!(
                    "{at}: int-or-string must not have a type (has `{t}`)"
                ));
            }
        }
        Some(other) => problems.push(format!("{at}: `type` must be a single string, is {other}")),
        None if int_or_string || preserve => {}
        None => problems.push(format!("{at}: no `type`")),
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        problems.push(format!(
            "{at}: both `properties` and `additionalProperties`"
        ));
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, child) in properties {
            walk_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    match node.get("items") {
        Some(items @ Value::Object(_)) => walk_structural(items, &format!("{path}[]"), problems),
        Some(other) => problems.push(format!("{at}: `items` must be one schema, is {other}")),
        None if node.get("type") == Some(&Value::String("array".into())) => {
            problems.push(format!("{at}: array without `items`"));
        }
        None => {}
    }
    match node.get("additionalProperties") {
        Some(child @ Value::Object(_)) => walk_structural(child, &format!("{path}{{}}"), problems),
        Some(other) => problems.push(format!("{at}: `additionalProperties` is {other}")),
        None => {}
    }
}

/// File name of a CRD under `deploy/crds`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!(
        "{}.yaml",
        crd.metadata
            .name
            .as_deref()
            .expect("generated CRDs are named")
    )
}

/// The YAML text of a CRD file, with a header saying how it was produced.
pub fn render(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD serializes to YAML");
    format!(
        "# Generated by `cargo run --bin crdgen` from the cstor-api types. Do not edit.\n{body}"
    )
}

/// Every CRD file as `(file name, contents)`.
pub fn rendered_files() -> Vec<(String, String)> {
    all_crds()
        .iter()
        .map(|crd| (file_name(crd), render(crd)))
        .collect()
}

/// Writes every CRD file into `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in rendered_files() {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Compares `dir` with what [`write_all`] would write. Returns one line per problem: a file
/// that differs, is missing, or is a `.yaml` file crdgen does not produce. Empty = in sync.
pub fn check_dir(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    for (name, text) in rendered_files() {
        let path = dir.join(&name);
        match std::fs::read_to_string(&path) {
            Ok(current) if current == text => {}
            Ok(_) => problems.push(format!("{} differs", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{} is missing", path.display()));
            }
            Err(e) => return Err(e),
        }
        expected.insert(name);
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.ends_with(".yaml") && !expected.contains(&name) {
                    problems.push(format!(
                        "{} is not produced by crdgen (stale?)",
                        dir.join(&name).display()
                    ));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(problems)
}

/// The generated CRD schema of a kind as JSON, e.g. for comparing with upstream's.
pub fn schema_json(crd: &CustomResourceDefinition) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("JSONSchemaProps serializes"))
        .unwrap_or(Value::Object(Map::new()))
}
