//! Compiles the gRPC protos under `proto/` with `protox` (pure Rust, no system
//! `protoc`) and generates prost messages plus tonic clients and servers.
//! The encoded file descriptor set is written to `$OUT_DIR/cstor_descriptor.bin`
//! for gRPC reflection and for the wire-level tests.

use std::path::PathBuf;

const PROTOS: [&str; 2] = ["proto/csi.proto", "proto/cstorvolume.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    let mut compiler = protox::Compiler::new(["proto"])
        .map_err(|e| format!("setting up protox with include dir proto/: {e}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(PROTOS)
        .map_err(|e| format!("compiling {PROTOS:?} with protox failed: {e}"))?;

    // `encode_file_descriptor_set` keeps custom option values (csi_secret, alpha_*),
    // which the prost_types conversion used for code generation drops.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("cstor_descriptor.bin");
    std::fs::write(&descriptor_path, compiler.encode_file_descriptor_set()).map_err(|e| {
        format!(
            "writing file descriptor set to {}: {e}",
            descriptor_path.display()
        )
    })?;

    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .map_err(|e| format!("generating Rust code from {PROTOS:?}: {e}"))?;
    Ok(())
}
