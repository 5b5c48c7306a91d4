//! A hash of a value that survives operator restarts and upgrades: 32-bit FNV-1 over its JSON
//! with `null` fields dropped and object keys sorted, so a field added to a type later (absent
//! from the objects that exist) does not change the hash of those objects.

use serde::Serialize;
use serde_json::Value;

/// Decimal 32-bit FNV-1 hash of `value`'s canonical JSON.
pub fn of<T: Serialize>(value: &T) -> String {
    let canonical = canonical(serde_json::to_value(value).unwrap_or(Value::Null));
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h.to_string()
}

/// `v` without `null` object fields, keys in sorted order.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut fields: Vec<(String, Value)> = map
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(fields.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn nulls_and_key_order_do_not_matter() {
        assert_eq!(
            super::of(&json!({"a": 1, "b": null, "c": {"x": [1, {"y": null}]}})),
            super::of(&json!({"c": {"x": [1, {}]}, "a": 1}))
        );
        assert_ne!(super::of(&json!({"a": 1})), super::of(&json!({"a": 2})));
    }
}
