//! Expansion as the CSI sidecars drive it: the external-resizer calls ControllerExpandVolume,
//! and the kubelet calls NodeExpandVolume as soon as that returns — possibly before the target
//! has grown the LUN. The target here holds its RESIZE until NodeExpandVolume has answered.
//!
//! NodeExpandVolume must then not report success with a capacity below `required_bytes` (the
//! kubelet would record the resize as finished with the filesystem still at the old size): it
//! must fail (the kubelet retries) or wait for the device.

use std::time::Duration;

use cstor_api::{
    cstor::CStorVolume,
    proto::csi::v1::{ControllerExpandVolumeRequest, CreateVolumeRequest, NodeExpandVolumeRequest},
};
use cstor_e2e::{Harness, scenario::*};
use kube::Api;

async fn node_expand_before_target_resize(h: &Harness) {
    let mut ctl = h.controller.clone();
    let mut node = h.node.clone();
    h.create_cspc(CSPC).await;
    let pv = format!("pvc-race-{}", &h.nodes[0][4..12]);
    ctl.create_volume(CreateVolumeRequest {
        name: pv.clone(),
        capacity_range: range(GIB),
        volume_capabilities: vec![xfs(&[])],
        parameters: params("1"),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("CreateVolume: {s:?}"));
    cvc_bound(h, &pv).await;
    let (staging, target) = stage_and_publish(h, &pv, xfs(&[])).await;
    let size0 = fs_size(&target);
    assert!(h.hold_resize(&pv, true).await, "the target of {pv} runs");

    ctl.controller_expand_volume(ControllerExpandVolumeRequest {
        volume_id: pv.clone(),
        capacity_range: range(2 * GIB),
        volume_capability: Some(xfs(&[])),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("ControllerExpandVolume: {s:?}"));
    let answer = node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: pv.clone(),
            volume_path: target.display().to_string(),
            capacity_range: range(2 * GIB),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(xfs(&[])),
            ..Default::default()
        })
        .await;
    h.hold_resize(&pv, false).await;
    let size1 = fs_size(&target);
    match answer {
        Err(status) => eprintln!("NodeExpandVolume refused before the resize: {status:?}"),
        Ok(r) => {
            let r = r.into_inner();
            assert!(
                r.capacity_bytes >= 2 * GIB && size1 > size0,
                "NodeExpandVolume reported success with capacity_bytes {} (required {}) and the \
                 filesystem still at {size1} bytes (was {size0}): the kubelet would consider \
                 the resize done",
                r.capacity_bytes,
                2 * GIB
            );
        }
    }
    // Once the target has resized, a retried NodeExpandVolume grows the filesystem.
    let cvs: Api<CStorVolume> = h.api();
    wait("CV capacity 2Gi in status", || async {
        cvs.get_opt(&pv).await.ok().flatten().filter(|cv| {
            cv.status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .is_some_and(|q| q.0 == "2Gi")
        })
    })
    .await;
    let r = node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: pv.clone(),
            volume_path: target.display().to_string(),
            capacity_range: range(2 * GIB),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(xfs(&[])),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("NodeExpandVolume after the resize: {s:?}"))
        .into_inner();
    assert!(r.capacity_bytes >= 2 * GIB);
    assert!(fs_size(&target) > size0 + GIB as u64 * 9 / 10);
    unpublish_and_unstage(h, &pv, &staging, &target).await;
}

#[test]
fn node_expand_right_after_controller_expand() {
    run(
        "node_expand_right_after_controller_expand",
        1,
        Duration::from_secs(300),
        |h| Box::pin(node_expand_before_target_resize(h)),
    );
}
