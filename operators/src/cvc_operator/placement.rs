//! Replica placement (upstream `distributeCVRs`), decided only from what exists.
//!
//! Inputs are the CSPIs of the CSPC, the pools that already hold a replica of the volume and
//! (for a restore) the pools holding the source volume. A pool is usable when it is ONLINE or
//! DEGRADED (a degraded zpool still serves writes), not read-only, and not already hosting a
//! replica of the volume. Order of preference: the pool on `publish.nodeId` when the policy asks
//! for replica affinity, then the zone with the fewest replicas of this volume (nodes labelled
//! `topology.kubernetes.io/zone`; a node without the label is its own zone), then a stable
//! pseudo-random order per volume (xxhash of `<pv>/<pool>`), which spreads volumes over pools
//! like upstream's shuffle but gives the same answer when a reconcile is repeated.

use std::collections::{BTreeMap, BTreeSet};

use cstor_api::cstor::{CStorPoolInstance, CStorPoolInstancePhase};
use kube::ResourceExt;
use xxhash_rust::xxh64::xxh64;

/// Node label carrying the zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A pool as seen by placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// CSPI name.
    pub name: String,
    /// CSPI uid.
    pub uid: String,
    /// `spec.hostName` of the CSPI.
    pub host: String,
    /// Zone of the pool's node, if known.
    pub zone: Option<String>,
    /// `status.phase`.
    pub phase: CStorPoolInstancePhase,
    /// `status.readOnly`.
    pub read_only: bool,
}

impl Pool {
    /// From a CSPI and the zone of its node.
    pub fn from_cspi(cspi: &CStorPoolInstance, zone: Option<String>) -> Self {
        let status = cspi.status.as_ref();
        Self {
            name: cspi.name_any(),
            uid: cspi.metadata.uid.clone().unwrap_or_default(),
            host: cspi
                .spec
                .host_name
                .clone()
                .or_else(|| {
                    cspi.labels()
                        .get(cstor_api::constants::label::HOSTNAME)
                        .cloned()
                })
                .unwrap_or_default(),
            zone,
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            read_only: status.is_some_and(|s| s.read_only),
        }
    }

    /// Why the pool cannot take a new replica, if it cannot.
    pub fn unusable_because(&self) -> Option<String> {
        if self.read_only {
            return Some("pool is read-only".to_owned());
        }
        match self.phase {
            CStorPoolInstancePhase::Online | CStorPoolInstancePhase::Degraded => None,
            CStorPoolInstancePhase::Empty => {
                Some("pool has no status yet (pool manager not running?)".to_owned())
            }
            ref other => Some(format!("pool phase is {other}")),
        }
    }

    fn zone_key(&self) -> String {
        match &self.zone {
            Some(z) => format!("zone:{z}"),
            None => format!("host:{}", self.host),
        }
    }
}

/// What placement needs besides the pools.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// PV name.
    pub pv: &'a str,
    /// CSPC name (for messages).
    pub cspc: &'a str,
    /// Replicas wanted in total.
    pub replica_count: usize,
    /// Pools already holding a replica of this volume.
    pub existing: &'a BTreeSet<String>,
    /// Non-empty: only these pools, in this order (`policy.replicaPoolInfo`).
    pub allowed: &'a [String],
    /// Some: restore/clone, only pools holding the source volume.
    pub source_pools: Option<&'a BTreeSet<String>>,
    /// Preferred host (`publish.nodeId` with replica affinity).
    pub preferred_host: Option<&'a str>,
}

static NO_POOLS: BTreeSet<String> = BTreeSet::new();

impl Default for Request<'_> {
    fn default() -> Self {
        Self {
            pv: "",
            cspc: "",
            replica_count: 0,
            existing: &NO_POOLS,
            allowed: &[],
            source_pools: None,
            preferred_host: None,
        }
    }
}

/// Placement failure: the upstream message plus why each pool was left out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not enough pools are available of provided CSPC: {cspc:?}, usable pool count: {usable} pending replica count: {pending}{}",
    excluded_suffix(.excluded)
)]
pub struct NotEnoughPools {
    /// CSPC name.
    pub cspc: String,
    /// Usable pools found.
    pub usable: usize,
    /// Replicas still to place.
    pub pending: usize,
    /// `(pool, why)` for every pool left out.
    pub excluded: Vec<(String, String)>,
}

fn excluded_suffix(excluded: &[(String, String)]) -> String {
    if excluded.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = excluded.iter().map(|(p, w)| format!("{p}: {w}")).collect();
    format!(" (pools not used: {})", parts.join("; "))
}

/// Picks the pools for the replicas still missing. Returns an empty list when the volume
/// already has `replica_count` replicas.
pub fn choose<'p>(pools: &'p [Pool], req: &Request<'_>) -> Result<Vec<&'p Pool>, NotEnoughPools> {
    let pending = req.replica_count.saturating_sub(req.existing.len());
    if pending == 0 {
        return Ok(Vec::new());
    }
    let mut excluded = Vec::new();
    let mut candidates: Vec<&Pool> = Vec::new();
    for pool in pools {
        if !req.allowed.is_empty() && !req.allowed.contains(&pool.name) {
            continue;
        }
        if req.existing.contains(&pool.name) {
            continue;
        }
        if let Some(src) = req.source_pools
            && !src.contains(&pool.name)
        {
            excluded.push((
                pool.name.clone(),
                "does not hold a replica of the source volume".to_owned(),
            ));
            continue;
        }
        if let Some(why) = pool.unusable_because() {
            excluded.push((pool.name.clone(), why));
            continue;
        }
        candidates.push(pool);
    }
    for name in req.allowed {
        if !pools.iter().any(|p| &p.name == name) {
            excluded.push((
                name.clone(),
                format!(
                    "named in replicaPoolInfo but not a pool of CSPC {:?}",
                    req.cspc
                ),
            ));
        }
    }
    if candidates.len() < pending {
        return Err(NotEnoughPools {
            cspc: req.cspc.to_owned(),
            usable: candidates.len(),
            pending,
            excluded,
        });
    }
    // Stable pseudo-random order; an explicit pool list keeps its order.
    if req.allowed.is_empty() {
        candidates.sort_by_key(|p| {
            (
                xxh64(format!("{}/{}", req.pv, p.name).as_bytes(), 0),
                &p.name,
            )
        });
    } else {
        candidates.sort_by_key(|p| req.allowed.iter().position(|a| a == &p.name));
    }
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for pool in pools.iter().filter(|p| req.existing.contains(&p.name)) {
        *per_zone.entry(pool.zone_key()).or_default() += 1;
    }
    let mut chosen = Vec::with_capacity(pending);
    if let Some(host) = req.preferred_host
        && let Some(i) = candidates.iter().position(|p| p.host == host)
    {
        let pool = candidates.remove(i);
        *per_zone.entry(pool.zone_key()).or_default() += 1;
        chosen.push(pool);
    }
    while chosen.len() < pending {
        // Fewest replicas in the pool's zone first; ties keep the stable order.
        let (i, _) = candidates
            .iter()
            .enumerate()
            .min_by_key(|(i, p)| (per_zone.get(&p.zone_key()).copied().unwrap_or(0), *i))
            .expect("candidates.len() >= pending was checked");
        let pool = candidates.remove(i);
        *per_zone.entry(pool.zone_key()).or_default() += 1;
        chosen.push(pool);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, zone: Option<&str>, phase: &str, ro: bool) -> Pool {
        Pool {
            name: name.into(),
            uid: format!("uid-{name}"),
            host: format!("node-{name}"),
            zone: zone.map(Into::into),
            phase: phase.into(),
            read_only: ro,
        }
    }

    #[test]
    fn skips_offline_read_only_and_existing_pools() {
        let pools = vec![
            pool("a", None, "ONLINE", false),
            pool("b", None, "OFFLINE", false),
            pool("c", None, "ONLINE", true),
            pool("d", None, "ONLINE", false),
            pool("e", None, "DEGRADED", false),
        ];
        let existing = BTreeSet::from(["a".to_owned()]);
        let req = Request {
            pv: "pvc-1",
            cspc: "cspc",
            replica_count: 3,
            existing: &existing,
            ..Default::default()
        };
        let mut got: Vec<_> = choose(&pools, &req)
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        got.sort();
        assert_eq!(got, ["d", "e"]);
        let req = Request {
            replica_count: 4,
            ..req
        };
        let err = choose(&pools, &req).unwrap_err();
        assert_eq!((err.usable, err.pending), (2, 3));
        let msg = err.to_string();
        assert!(msg.starts_with("not enough pools are available of provided CSPC: \"cspc\", usable pool count: 2 pending replica count: 3"), "{msg}");
        assert!(
            msg.contains("b: pool phase is OFFLINE") && msg.contains("c: pool is read-only"),
            "{msg}"
        );
    }

    #[test]
    fn spreads_over_zones_and_honours_affinity() {
        let pools = vec![
            pool("a1", Some("z1"), "ONLINE", false),
            pool("a2", Some("z1"), "ONLINE", false),
            pool("b1", Some("z2"), "ONLINE", false),
            pool("b2", Some("z2"), "ONLINE", false),
            pool("c1", Some("z3"), "ONLINE", false),
        ];
        let existing = BTreeSet::new();
        for pv in ["pvc-1", "pvc-2", "pvc-3", "pvc-4"] {
            let req = Request {
                pv,
                cspc: "c",
                replica_count: 3,
                existing: &existing,
                preferred_host: Some("node-a2"),
                ..Default::default()
            };
            let got = choose(&pools, &req).unwrap();
            assert_eq!(got[0].name, "a2");
            let zones: BTreeSet<_> = got.iter().map(|p| p.zone.clone().unwrap()).collect();
            assert_eq!(zones.len(), 3, "{pv}: {got:?}");
        }
    }

    #[test]
    fn restricted_lists_and_restores() {
        let pools = vec![
            pool("a", None, "ONLINE", false),
            pool("b", None, "ONLINE", false),
            pool("c", None, "ONLINE", false),
        ];
        let existing = BTreeSet::new();
        let allowed = vec!["c".to_owned(), "a".to_owned()];
        let req = Request {
            pv: "p",
            cspc: "x",
            replica_count: 2,
            existing: &existing,
            allowed: &allowed,
            ..Default::default()
        };
        let got: Vec<_> = choose(&pools, &req)
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(got, ["c", "a"]);
        let src = BTreeSet::from(["b".to_owned()]);
        let req = Request {
            pv: "p",
            cspc: "x",
            replica_count: 1,
            existing: &existing,
            source_pools: Some(&src),
            ..Default::default()
        };
        let got: Vec<_> = choose(&pools, &req)
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(got, ["b"]);
        let already = BTreeSet::from(["a".to_owned()]);
        let req = Request {
            pv: "p",
            cspc: "x",
            replica_count: 1,
            existing: &already,
            ..Default::default()
        };
        assert!(choose(&pools, &req).unwrap().is_empty());
    }
}
