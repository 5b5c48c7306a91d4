//! Generated gRPC bindings (prost messages, tonic clients and servers).
//!
//! * [`csi::v1`]: the Container Storage Interface, spec v1.12.0 (`proto/csi.proto`).
//! * [`snapshot::v1alpha1`]: the snapshot command service a cStor target serves on
//!   TCP port [`crate::constants::engine::SNAPSHOT_GRPC_PORT`] (`proto/cstorvolume.proto`,
//!   proto package `v1alpha1`).
//! * [`FILE_DESCRIPTOR_SET`]: the encoded `google.protobuf.FileDescriptorSet` of both
//!   files and their imports, for gRPC reflection or descriptor inspection.

/// Container Storage Interface.
pub mod csi {
    /// CSI spec v1.12.0, proto package `csi.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("csi.v1");
    }
}

/// Snapshot commands of the cStor volume target.
pub mod snapshot {
    /// Proto package `v1alpha1`: service `RunSnapCommand`.
    pub mod v1alpha1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("v1alpha1");
    }
}

/// Encoded `FileDescriptorSet` of `csi.proto`, `cstorvolume.proto` and their imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cstor_descriptor.bin"));

/// CSI specification version these bindings were generated from.
pub const CSI_SPEC_VERSION: &str = "1.12.0";
