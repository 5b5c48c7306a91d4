//! `zfs` for the engine stand-in: the zvol commands answered from the node's image store
//! (`$CSTOR_STANDIN_STORE`), every other command run by zfs-fuse's `zfs`.

use std::{path::PathBuf, sync::Arc};

use cstor_api::exec::{Cmd, HostRunner, Runner};
use cstor_local::standin::{STORE_ENV, dataplane::DataPlane, dataplane::ZvolShim};

const HELP: &str = "\
`zfs` of the engine stand-in: zvol commands (create -V, set/get/list of zvols, snapshots, clones,
destroy, stats, send/recv streams) are answered from the node's zvol store; every other command runs zfs-fuse's `zfs`
(the first `zfs` on PATH that is not this program).

Usage: cstor-standin-zfs <zfs arguments>...

Options:
  -h, --help     Print help (only as the sole argument)
  -V, --version  Print version (only as the sole argument)

Environment:
  [env: CSTOR_STANDIN_STORE=]  the node's zvol store (a directory)
";

/// The real `zfs` on `PATH`: the first that is not this program.
fn real_zfs() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?.canonicalize().ok()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("zfs"))
        .find(|p| p.is_file() && p.canonicalize().ok().as_ref() != Some(&me))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [only] = args.as_slice() {
        match only.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                return;
            }
            "--version" | "-V" => {
                println!("cstor-standin-zfs {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            _ => {}
        }
    }
    let Some(store) = std::env::var_os(STORE_ENV) else {
        eprintln!("cstor-standin-zfs: {STORE_ENV} is not set (the node's zvol store)");
        std::process::exit(2);
    };
    let Some(zfs) = real_zfs() else {
        eprintln!("cstor-standin-zfs: no zfs (zfs-fuse) on PATH");
        std::process::exit(2);
    };
    let plane = DataPlane::new(PathBuf::from(store)).unwrap_or_else(|e| {
        eprintln!("cstor-standin-zfs: store: {e}");
        std::process::exit(2);
    });
    // Streams: binary data on stdout/stdin, not through the runner's captured text.
    let streamed = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["send", snap] if snap.contains('/') => Some(plane.send_stream(
            snap,
            None,
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        )),
        ["send", "-i", prev, snap] if snap.contains('/') => Some(plane.send_stream(
            snap,
            Some(prev),
            &mut std::io::BufWriter::new(std::io::stdout().lock()),
        )),
        ["recv" | "receive", "-F", ds] if ds.contains('/') => {
            Some(plane.receive_stream(ds, &mut std::io::BufReader::new(std::io::stdin().lock())))
        }
        _ => None,
    };
    match streamed {
        Some(Ok(())) => std::process::exit(0),
        Some(Err(e)) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
        None => {}
    }
    let inner = Arc::new(HostRunner::new().with_program("zfs", zfs.to_string_lossy()));
    let shim = ZvolShim::new(inner, plane);
    let cmd = Cmd::new("zfs").args(args);
    match shim.run(&cmd).await {
        Ok(out) => {
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            std::process::exit(out.code.unwrap_or(1));
        }
        Err(e) => {
            eprintln!("cstor-standin-zfs: {e}");
            std::process::exit(1);
        }
    }
}
