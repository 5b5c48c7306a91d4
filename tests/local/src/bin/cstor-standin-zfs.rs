//! `zfs` for the engine stand-in: the zvol commands answered from the node's image store
//! (`$CSTOR_STANDIN_STORE`), every other command run by zfs-fuse's `zfs`. Run as `zpool` (a
//! link of that name), it runs zfs-fuse's `zpool`; an import that renames a pool
//! (`zpool import … <old> <new>`) also renames the pool's zvols in the store, as uZFS keeps a
//! pool's zvols through a rename.

use std::{path::PathBuf, sync::Arc};

use cstor_api::exec::{Cmd, HostRunner, Runner};
use cstor_local::standin::{STORE_ENV, dataplane::DataPlane, dataplane::ZvolShim};

const HELP: &str = "\
`zfs` of the engine stand-in: zvol commands (create -V, set/get/list of zvols, snapshots, clones,
destroy, stats, send/recv streams) are answered from the node's zvol store; every other command runs zfs-fuse's `zfs`
(the first `zfs` on PATH that is not this program).

Usage: cstor-standin-zfs <zfs arguments>...
       zpool <zpool arguments>...   (as a link named zpool)

Options:
  -h, --help     Print help (only as the sole argument)
  -V, --version  Print version (only as the sole argument)

Environment:
  [env: CSTOR_STANDIN_STORE=]  the node's zvol store (a directory)
";

/// The real `program` (`zfs`, `zpool`) on `PATH`: the first that is not this program.
fn real(program: &str) -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?.canonicalize().ok()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file() && p.canonicalize().ok().as_ref() != Some(&me))
}

/// `(old, new)` of `zpool import [options] <old> <new>`.
fn import_rename(args: &[String]) -> Option<(&str, &str)> {
    let (first, rest) = args.split_first()?;
    if first != "import" {
        return None;
    }
    let mut names = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "-c" | "-d" | "-R" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => names.push(s),
        }
    }
    match names.as_slice() {
        [old, new] => Some((old, new)),
        _ => None,
    }
}

/// This program as `zpool`: zfs-fuse's `zpool`, and the store follows a renaming import.
fn zpool(args: &[String]) -> ! {
    let Some(zpool) = real("zpool") else {
        eprintln!("cstor-standin-zfs: no zpool (zfs-fuse) on PATH");
        std::process::exit(2);
    };
    let status = match std::process::Command::new(&zpool).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cstor-standin-zfs: {}: {e}", zpool.display());
            std::process::exit(2);
        }
    };
    if status.success()
        && let Some((old, new)) = import_rename(args)
        && let Some(store) = std::env::var_os(STORE_ENV)
    {
        match DataPlane::new(PathBuf::from(store)) {
            Ok(plane) => {
                plane.rename_pool(old, new);
            }
            Err(e) => {
                eprintln!("cstor-standin-zfs: store: {e}");
                std::process::exit(1);
            }
        }
    }
    std::process::exit(status.code().unwrap_or(1));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invoked_as = std::env::args().next().unwrap_or_default();
    if std::path::Path::new(&invoked_as).file_name() == Some(std::ffi::OsStr::new("zpool")) {
        zpool(&args);
    }
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
    let Some(zfs) = real("zfs") else {
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

#[cfg(test)]
mod tests {
    use super::import_rename;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn renaming_imports_are_told_from_others() {
        assert_eq!(
            import_rename(&args(
                "import -o cachefile=/tmp/p.cache -c /tmp/p.cache cstor-a cstor-b"
            )),
            Some(("cstor-a", "cstor-b"))
        );
        assert_eq!(
            import_rename(&args(
                "import -o cachefile=/tmp/x -d /var/openebs/sparse cstor-a cstor-b"
            )),
            Some(("cstor-a", "cstor-b"))
        );
        assert_eq!(
            import_rename(&args("import -o cachefile=/tmp/x -d /dev cstor-b")),
            None
        );
        assert_eq!(import_rename(&args("import")), None);
        assert_eq!(import_rename(&args("create cstor-a cstor-b")), None);
    }
}
