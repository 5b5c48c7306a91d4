//! Bad input: clear INVALID_ARGUMENT errors naming the problem, and no CVC created.

mod common;

use std::collections::HashMap;

use common::*;
use cstor_api::{
    cstor::CStorVolumeConfig,
    proto::csi::v1::{CapacityRange, CreateVolumeRequest},
};
use kube::api::ListParams;
use tonic::Code;

#[tokio::test]
async fn bad_create_requests_are_refused_before_anything_is_written() {
    let mut h = Harness::start().await;
    let long = format!("pvc-{}", "a".repeat(196));
    let with = |f: &dyn Fn(&mut CreateVolumeRequest)| {
        let mut r = create_req(&pv_name(), GIB);
        f(&mut r);
        r
    };
    let cases: Vec<(CreateVolumeRequest, Code, &str)> = vec![
        (
            create_req(&long, GIB),
            Code::InvalidArgument,
            "200 characters",
        ),
        (create_req("", GIB), Code::InvalidArgument, "name"),
        (
            with(&|r| r.parameters = HashMap::new()),
            Code::InvalidArgument,
            "missing StorageClass parameter cstorPoolCluster",
        ),
        (
            with(&|r| {
                r.parameters.remove("replicaCount");
            }),
            Code::InvalidArgument,
            "replicaCount",
        ),
        (
            with(&|r| {
                r.parameters.remove("cas-type");
            }),
            Code::InvalidArgument,
            "cas-type",
        ),
        (
            with(&|r| {
                r.parameters.insert("replicaCount".into(), "-3".into());
            }),
            Code::InvalidArgument,
            "replicaCount=\"-3\"",
        ),
        (
            with(&|r| {
                r.parameters
                    .insert("cstorPoolCluster".into(), "x".repeat(100));
            }),
            Code::InvalidArgument,
            "cstorPoolCluster",
        ),
        (
            with(&|r| {
                r.parameters.insert("padding".into(), "p".repeat(5000));
            }),
            Code::InvalidArgument,
            "4096",
        ),
        (
            with(&|r| {
                r.capacity_range = Some(CapacityRange {
                    required_bytes: -1,
                    limit_bytes: 0,
                })
            }),
            Code::InvalidArgument,
            "required_bytes is -1",
        ),
        (
            with(&|r| {
                r.capacity_range = Some(CapacityRange {
                    required_bytes: 0,
                    limit_bytes: -7,
                })
            }),
            Code::InvalidArgument,
            "limit_bytes is -7",
        ),
        (
            with(&|r| {
                r.capacity_range = Some(CapacityRange {
                    required_bytes: i64::MAX,
                    limit_bytes: 0,
                })
            }),
            Code::OutOfRange,
            "largest supported",
        ),
        (
            with(&|r| r.volume_capabilities[0].access_mode = None),
            Code::InvalidArgument,
            "access_mode is missing",
        ),
        (
            with(&|r| r.volume_capabilities[0].access_type = None),
            Code::InvalidArgument,
            "access_type is missing",
        ),
    ];
    for (req, code, text) in cases {
        let e = h.controller.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{text}: {e:?}");
        assert!(e.message().contains(text), "{text}: {}", e.message());
    }
    let cvcs = h
        .api::<CStorVolumeConfig>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        cvcs.items.is_empty(),
        "no CVC may be created: {:?}",
        cvcs.items
            .iter()
            .map(|c| &c.metadata.name)
            .collect::<Vec<_>>()
    );
    h.cleanup().await;
}
