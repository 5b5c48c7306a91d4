//! GetCapacity: free space of the pools (CSPIs) of a StorageClass's CStorPoolCluster that can
//! take new replicas (phase ONLINE or DEGRADED — a degraded pool still serves I/O — and not
//! read-only), optionally only those on nodes inside the requested topology.
//!
//! A volume of `replicaCount` replicas needs that many pools with room for its full size, so
//! `maximum_volume_size` is the `replicaCount`-th largest free space (0 with fewer usable
//! pools), and `available_capacity` the total free space divided by `replicaCount`.

use cstor_api::{
    constants::label,
    cstor::{CStorPoolInstance, CStorPoolInstancePhase},
    proto::csi::v1::{GetCapacityRequest, GetCapacityResponse},
};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;

use crate::{
    capability,
    create::node_matches,
    error::{KubeError, QueryError},
    params::VolumeParams,
    quantity::parse_bytes,
    server::ControllerService,
};

/// Whether a pool can take new replicas.
fn usable(cspi: &CStorPoolInstance) -> bool {
    cspi.status.as_ref().is_some_and(|s| {
        !s.read_only
            && matches!(
                s.phase,
                Some(CStorPoolInstancePhase::Online | CStorPoolInstancePhase::Degraded)
            )
    })
}

/// Free bytes of a pool.
fn free_bytes(cspi: &CStorPoolInstance) -> u64 {
    cspi.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| parse_bytes(&c.free.0))
        .unwrap_or(0)
}

/// The node a pool lives on: the one matching its node selector (or hostname).
fn pool_node<'a>(cspi: &CStorPoolInstance, nodes: &'a [Node]) -> Option<&'a Node> {
    let selector = &cspi.spec.node_selector;
    nodes.iter().find(|n| {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        if selector.is_empty() {
            let host = cspi.spec.host_name.as_deref().unwrap_or_default();
            !host.is_empty() && labels.get(label::HOSTNAME).map(String::as_str) == Some(host)
        } else {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
    })
}

impl ControllerService {
    /// GetCapacity.
    pub async fn get_capacity(
        &self,
        req: GetCapacityRequest,
    ) -> Result<GetCapacityResponse, QueryError> {
        let none = GetCapacityResponse {
            available_capacity: 0,
            maximum_volume_size: Some(0),
            minimum_volume_size: None,
        };
        if !req.volume_capabilities.is_empty()
            && capability::check_all(&req.volume_capabilities, None).is_err()
        {
            return Ok(none); // no capacity for volumes we cannot create
        }
        let (pool_cluster, replicas) = if req.parameters.is_empty() {
            (None, 1u64)
        } else {
            let p = VolumeParams::try_from(&req.parameters)?;
            (Some(p.pool_cluster), u64::from(p.replica_count))
        };
        let mut lp = ListParams::default();
        if let Some(cspc) = &pool_cluster {
            lp = lp.labels(&format!("{}={cspc}", label::CSTOR_POOL_CLUSTER));
        }
        let cspis = self
            .cspis()
            .list(&lp)
            .await
            .map_err(|e| KubeError::new("listing CStorPoolInstances", e))?;
        let mut pools: Vec<&CStorPoolInstance> = cspis.items.iter().filter(|c| usable(c)).collect();

        let segments = req
            .accessible_topology
            .as_ref()
            .map(|t| &t.segments)
            .filter(|s| !s.is_empty());
        let nodes;
        if let Some(segments) = segments {
            nodes = self
                .nodes()
                .list(&ListParams::default())
                .await
                .map_err(|e| KubeError::new("listing Nodes", e))?
                .items;
            pools.retain(|c| pool_node(c, &nodes).is_some_and(|n| node_matches(n, segments)));
        }

        let mut free: Vec<u64> = pools.iter().map(|c| free_bytes(c)).collect();
        free.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = free.iter().sum();
        let max = free.get(replicas as usize - 1).copied().unwrap_or(0);
        Ok(GetCapacityResponse {
            available_capacity: (total / replicas).min(i64::MAX as u64) as i64,
            maximum_volume_size: Some(max.min(i64::MAX as u64) as i64),
            minimum_volume_size: None,
        })
    }
}
