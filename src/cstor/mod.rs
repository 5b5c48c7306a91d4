//! `cstor.openebs.io/v1` kinds, wire-compatible with the upstream Go operators.
//!
//! Conventions shared by every type in this module (and in [`crate::ndm`]):
//! - JSON field names are exactly upstream's, quirks included (CVC `status.condition`, CVR
//!   `spec.replicaid`, bare-string statuses of CVA and the backup kinds).
//! - A field upstream may omit is an `Option`, and `None` is never serialized, so an object
//!   read from the cluster serializes back to the same JSON (no invented `null`s or defaults).
//! - Every object level keeps the fields it does not model in an `extra` map, so a
//!   read-modify-write by our components never drops what a newer upstream tool wrote.
//! - Phases are [`string_enum!`] types: known values are variants, anything else is kept in
//!   `Other(String)`, so an object written by a newer operator always parses.
//! - The root types carry `apiVersion`/`kind` implicitly (always written, checked on read)
//!   and implement [`kube::Resource`], [`kube::core::object::HasSpec`] and
//!   [`kube::CustomResourceExt`].
//!
//! Use [`from_yaml`], [`from_json`] or [`from_value`] to parse with errors that name the
//! JSON path of the offending field.

use serde::de::DeserializeOwned;

pub mod backup;
pub mod common;
pub mod pool_cluster;
pub mod pool_instance;
pub mod snapshot_record;
pub mod volume;
pub mod volume_attachment;
pub mod volume_config;
pub mod volume_policy;
pub mod volume_replica;

pub use backup::*;
pub use common::*;
pub use pool_cluster::*;
pub use pool_instance::*;
pub use snapshot_record::*;
pub use volume::*;
pub use volume_attachment::*;
pub use volume_config::*;
pub use volume_policy::*;
pub use volume_replica::*;

/// API group of the cStor kinds.
pub const GROUP: &str = "cstor.openebs.io";
/// API version of the cStor kinds.
pub const VERSION: &str = "v1";
/// `apiVersion` of the cStor kinds.
pub const API_VERSION: &str = "cstor.openebs.io/v1";

/// A document that could not be turned into the requested type.
///
/// `path` is the JSON path of the offending value (`.` for the document root), e.g.
/// `spec.pools[0]` for "missing field `nodeSelector`".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: at `{path}`: {message}")]
pub struct ParseError {
    /// The Rust type that was being parsed (its last path segment).
    pub kind: String,
    /// JSON path of the value that failed (`.` for the root).
    pub path: String,
    /// What was wrong (serde's message, e.g. "missing field `dataRaidGroups`").
    pub message: String,
}

impl ParseError {
    fn new<T>(path: String, message: String) -> Self {
        let full = std::any::type_name::<T>();
        let kind = full.rsplit("::").next().unwrap_or(full).to_owned();
        Self {
            kind,
            path,
            message,
        }
    }
}

/// Parses one YAML document into `T`; the error names the JSON path of the bad field.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let value: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| ParseError::new::<T>(".".to_owned(), format!("not valid YAML: {e}")))?;
    from_value(value)
}

/// Parses a JSON document into `T`; the error names the JSON path of the bad field.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let out: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ParseError::new::<T>(e.path().to_string(), e.inner().to_string()))?;
    de.end()
        .map_err(|e| ParseError::new::<T>(".".to_owned(), e.to_string()))?;
    Ok(out)
}

/// Converts a JSON value (e.g. a `DynamicObject`'s data) into `T`; the error names the JSON
/// path of the bad field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| ParseError::new::<T>(e.path().to_string(), e.inner().to_string()))
}

/// Declares a string-valued enumeration that tolerates unknown values.
///
/// Known values become unit variants; any other string is kept verbatim in `Other(String)`
/// (always build values with `From<&str>` so a known string never ends up in `Other`).
/// `schema = open` emits `{type: string}` in CRD schemas; `schema = closed` also lists the
/// known values as the schema's `enum` (used only where upstream's CRD does the same).
macro_rules! string_enum {
    (
        schema = $schema:ident;
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every value this version knows, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($value),+];

            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Other(other) => other,
                }
            }

            /// Whether the value is one this version knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match Self::from(value.as_str()) {
                    Self::Other(_) => Self::Other(value),
                    known => known,
                }
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(deserializer).map(Self::from)
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                if stringify!($schema) == "closed" {
                    schemars::json_schema!({ "type": "string", "enum": Self::KNOWN })
                } else {
                    schemars::json_schema!({ "type": "string" })
                }
            }
        }
    };
}
pub(crate) use string_enum;

/// Declares the root type of a custom resource kind: `metadata`, a required `spec`, optional
/// top-level siblings (`status`, `versionDetails`, `publish`...), fields that are always
/// written but defaulted on read, and an `extra` map for unknown top-level fields. Implements
/// serde (with `apiVersion`/`kind` written and checked), `JsonSchema`, `kube::Resource`,
/// `HasSpec`, `CustomResourceExt` and [`crate::crdgen::CrdInfo`].
macro_rules! custom_resource {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            group: $group:literal,
            version: $version:literal,
            plural: $plural:literal,
            singular: $singular:literal,
            short_names: [$($short:literal),* $(,)?],
            categories: [$($category:literal),* $(,)?],
            schema_required: [$($sreq:literal),* $(,)?],
            printer_columns: [$( ($pcname:literal, $pctype:literal, $pcpath:literal, $pcdesc:literal, $pcprio:expr) ),* $(,)?],
            spec: $spec:ty,
            defaulted: { $( $(#[$dmeta:meta])* $dfield:ident : $dty:ty = $djson:literal ),* $(,)? },
            optional: { $( $(#[$ometa:meta])* $ofield:ident : $oty:ty = $ojson:literal ),* $(,)? } $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            /// Standard object metadata.
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            /// Desired state (`spec`).
            pub spec: $spec,
            $( $(#[$dmeta])* pub $dfield: $dty, )*
            $( $(#[$ometa])* pub $ofield: Option<$oty>, )*
            /// Top-level fields this version does not model, kept verbatim so that a
            /// read-modify-write does not drop them.
            pub extra: std::collections::BTreeMap<String, serde_json::Value>,
        }

        impl $name {
            /// `apiVersion` of this kind.
            pub const API_VERSION: &'static str = concat!($group, "/", $version);
            /// `kind` of this kind.
            pub const KIND: &'static str = stringify!($name);

            /// A new object named `name` (no namespace yet) with the given spec.
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                Self {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    spec,
                    ..Default::default()
                }
            }

            /// A new object named `name` in `namespace` with the given spec.
            pub fn namespaced(
                name: impl Into<String>,
                namespace: impl Into<String>,
                spec: $spec,
            ) -> Self {
                let mut object = Self::new(name, spec);
                object.metadata.namespace = Some(namespace.into());
                object
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("apiVersion", Self::API_VERSION)?;
                map.serialize_entry("kind", Self::KIND)?;
                map.serialize_entry("metadata", &self.metadata)?;
                map.serialize_entry("spec", &self.spec)?;
                $( map.serialize_entry($djson, &self.$dfield)?; )*
                $(
                    if let Some(value) = &self.$ofield {
                        map.serialize_entry($ojson, value)?;
                    }
                )*
                for (key, value) in &self.extra {
                    const KNOWN: &[&str] = &["apiVersion", "kind", "metadata", "spec" $(, $djson)* $(, $ojson)*];
                    if !KNOWN.contains(&key.as_str()) {
                        map.serialize_entry(key, value)?;
                    }
                }
                map.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct RootVisitor;

                impl<'de> serde::de::Visitor<'de> for RootVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {} object", stringify!($name))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use serde::de::Error as _;
                        let mut metadata = None;
                        let mut spec: Option<$spec> = None;
                        $( let mut $dfield: Option<$dty> = None; )*
                        $( let mut $ofield: Option<$oty> = None; )*
                        let mut extra = std::collections::BTreeMap::new();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.as_str() {
                                "apiVersion" => {
                                    let found: String = map.next_value()?;
                                    if found != $name::API_VERSION {
                                        return Err(A::Error::custom(format!(
                                            "apiVersion: expected `{}` for kind {}, found `{}`",
                                            $name::API_VERSION, stringify!($name), found
                                        )));
                                    }
                                }
                                "kind" => {
                                    let found: String = map.next_value()?;
                                    if found != $name::KIND {
                                        return Err(A::Error::custom(format!(
                                            "kind: expected `{}`, found `{}`",
                                            $name::KIND, found
                                        )));
                                    }
                                }
                                "metadata" => metadata = Some(map.next_value()?),
                                "spec" => spec = Some(map.next_value()?),
                                $( $djson => $dfield = map.next_value::<Option<$dty>>()?, )*
                                $( $ojson => $ofield = map.next_value()?, )*
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    extra.insert(key, value);
                                }
                            }
                        }
                        Ok($name {
                            metadata: metadata.unwrap_or_default(),
                            spec: spec.ok_or_else(|| A::Error::missing_field("spec"))?,
                            $( $dfield: $dfield.unwrap_or_default(), )*
                            $( $ofield, )*
                            extra,
                        })
                    }
                }

                deserializer.deserialize_map(RootVisitor)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut properties = serde_json::Map::new();
                properties.insert("apiVersion".into(), serde_json::json!({
                    "type": "string",
                    "description": "APIVersion defines the versioned schema of this representation of an object.",
                }));
                properties.insert("kind".into(), serde_json::json!({
                    "type": "string",
                    "description": "Kind is a string value representing the REST resource this object represents.",
                }));
                properties.insert("metadata".into(), serde_json::json!({ "type": "object" }));
                properties.insert("spec".into(), generator.subschema_for::<$spec>().to_value());
                $( properties.insert($djson.into(), generator.subschema_for::<$dty>().to_value()); )*
                $( properties.insert($ojson.into(), generator.subschema_for::<$oty>().to_value()); )*
                let required: Vec<&str> = vec![$($sreq),*];
                let mut schema = serde_json::json!({
                    "type": "object",
                    "description": concat!(stringify!($name), " (", $group, "/", $version, ")."),
                    "properties": properties,
                });
                if !required.is_empty() {
                    schema["required"] = serde_json::json!(required);
                }
                schemars::Schema::try_from(schema).expect("a JSON object is a schema")
            }
        }

        impl kube::Resource for $name {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                stringify!($name).into()
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $group.into()
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                $version.into()
            }

            fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
                Self::API_VERSION.into()
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl kube::core::object::HasSpec for $name {
            type Spec = $spec;

            fn spec(&self) -> &$spec {
                &self.spec
            }

            fn spec_mut(&mut self) -> &mut $spec {
                &mut self.spec
            }
        }

        impl crate::crdgen::CrdInfo for $name {
            const SINGULAR: &'static str = $singular;
            const SHORT_NAMES: &'static [&'static str] = &[$($short),*];
            const CATEGORIES: &'static [&'static str] = &[$($category),*];
            const PRINTER_COLUMNS: &'static [crate::crdgen::PrinterColumn] = &[
                $( crate::crdgen::PrinterColumn {
                    name: $pcname,
                    type_: $pctype,
                    json_path: $pcpath,
                    description: $pcdesc,
                    priority: $pcprio,
                }, )*
            ];
        }

        impl kube::CustomResourceExt for $name {
            fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
                crate::crdgen::crd_for::<Self>()
            }

            fn crd_name() -> &'static str {
                concat!($plural, ".", $group)
            }

            fn api_resource() -> kube::core::ApiResource {
                kube::core::ApiResource::erase::<Self>(&())
            }

            fn shortnames() -> &'static [&'static str] {
                &[$($short),*]
            }
        }
    };
}
pub(crate) use custom_resource;
