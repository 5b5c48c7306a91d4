//! The `zpool import` listing (pools that can be imported).

use super::types::ImportablePool;

/// Parses the `pool:`/`id:`/`state:` blocks of `zpool import [-d dir]`. Text that lists no pool
/// gives an empty list.
pub fn parse_import_listing(text: &str) -> Vec<ImportablePool> {
    let mut out: Vec<ImportablePool> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pool" if !value.is_empty() => out.push(ImportablePool {
                name: value.to_string(),
                id: None,
                state: None,
            }),
            "id" => {
                if let Some(p) = out.last_mut().filter(|p| p.id.is_none()) {
                    p.id = Some(value.to_string());
                }
            }
            "state" => {
                if let Some(p) = out.last_mut().filter(|p| p.state.is_none()) {
                    p.state = Some(value.to_string());
                }
            }
            _ => {}
        }
    }
    out
}
