//! Writes the CRDs of the cStor and NDM kinds to `deploy/crds/<plural>.<group>.yaml`.
//!
//! Usage: `crdgen [--stdout | --check] [--dir <dir>]`
//! - no flag: (re)write the files;
//! - `--stdout`: print all CRDs as one multi-document YAML stream instead;
//! - `--check`: write nothing, exit 1 naming every file that differs from what would be written.

use std::{path::PathBuf, process::ExitCode};

use cstor_api::crdgen;

const USAGE: &str = "usage: crdgen [--stdout | --check] [--dir <dir>]";

enum Mode {
    Write,
    Stdout,
    Check,
}

fn main() -> ExitCode {
    let mut mode = Mode::Write;
    let mut dir = PathBuf::from(crdgen::DEFAULT_DIR);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stdout" => mode = Mode::Stdout,
            "--check" => mode = Mode::Check,
            "--dir" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("crdgen: --dir needs a directory\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("crdgen: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match mode {
        Mode::Stdout => {
            let docs: Vec<String> = crdgen::rendered_files()
                .into_iter()
                .map(|(_, text)| text)
                .collect();
            print!("{}", docs.join("---\n"));
            ExitCode::SUCCESS
        }
        Mode::Write => match crdgen::write_all(&dir) {
            Ok(paths) => {
                for path in paths {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crdgen: cannot write CRDs to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Mode::Check => match crdgen::check_dir(&dir) {
            Ok(problems) if problems.is_empty() => {
                println!("crdgen: {} is up to date", dir.display());
                ExitCode::SUCCESS
            }
            Ok(problems) => {
                for p in &problems {
                    eprintln!("crdgen: {p}");
                }
                eprintln!("crdgen: run `cargo run --bin crdgen` to regenerate");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("crdgen: cannot read {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}
