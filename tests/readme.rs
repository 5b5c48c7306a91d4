//! The README stays true to the code:
//!
//! * its configuration reference lists exactly the long flags and `[env: …]` variables of each
//!   binary's real `--help` (binaries are found next to this test's executable, in
//!   `target/<profile>/`; one that is not built yet is skipped with a printed reason);
//! * every binary of the workspace has a configuration section and is run by the "run the
//!   system" command, which builds once;
//! * the test command is the one CI runs;
//! * the architecture picture exists and shows every component.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

const README: &str = include_str!("../README.md");
const CI_RUN: &str = include_str!("../.ci/run");
const ARCH_DOT: &str = include_str!("../docs/architecture.dot");
const ARCH_SVG: &str = include_str!("../docs/architecture.svg");

const TEST_COMMAND: &str = "bash .ci/install-deps && cargo test --workspace --all-targets";
const CONFIG_HEADING: &str = "## Configuration reference";

/// The body of the section that starts with the line `heading` and ends before the next heading
/// of the same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = text.match_indices(heading).map(|(i, _)| i).find(|&i| {
        (i == 0 || text[..i].ends_with('\n')) && text[i + heading.len()..].starts_with(['\n', '\r'])
    })?;
    let body_start = start + heading.len();
    let mut offset = body_start;
    for line in text[body_start..].split_inclusive('\n') {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return Some(&text[body_start..offset]);
        }
        offset += line.len();
    }
    Some(&text[body_start..])
}

/// Long flags a `--help` text defines: the leading option tokens of each option line
/// (`-h, --help`, `--endpoint <ENDPOINT>`) and every flag of a usage line.
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut add = |token: &str| {
        let t = token.trim_matches(|c| matches!(c, '[' | ']' | ',' | '(' | ')'));
        let t = t.split('=').next().unwrap_or(t);
        if t.len() > 2
            && t.starts_with("--")
            && t[2..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            flags.insert(t.to_owned());
        }
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.to_ascii_lowercase().starts_with("usage:") {
            trimmed.split_whitespace().for_each(&mut add);
        } else if trimmed.starts_with('-') {
            for token in trimmed.split_whitespace() {
                let option_part = token.starts_with('-')
                    || token.starts_with('<')
                    || token.starts_with('[')
                    || token.starts_with("...");
                if !option_part {
                    break;
                }
                add(token);
            }
        }
    }
    flags
}

/// Environment variables a clap `--help` names (`[env: NAME=]`).
fn help_envs(help: &str) -> BTreeSet<String> {
    help.match_indices("[env: ")
        .filter_map(|(i, m)| {
            let rest = &help[i + m.len()..];
            let end = rest.find(['=', ']'])?;
            Some(rest[..end].trim().to_owned())
        })
        .collect()
}

/// Flags the README's tables document: backticked `--flag`s in the first cell of table rows.
fn documented_flags(section: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in section.lines() {
        let Some(row) = line.trim_start().strip_prefix('|') else {
            continue;
        };
        let first_cell = row.split('|').next().unwrap_or("");
        for (i, piece) in first_cell.split('`').enumerate() {
            if i % 2 == 1 && piece.starts_with("--") {
                flags.insert(piece.split_whitespace().next().unwrap_or(piece).to_owned());
            }
        }
    }
    flags
}

/// What the README's section for one binary gets wrong about its `--help`: flags and env
/// variables missing from the section, and documented flags the binary does not have.
fn reference_mismatches(bin: &str, help: &str, section: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let real = help_flags(help);
    let documented = documented_flags(section);
    if real.is_empty() {
        problems.push(format!(
            "{bin}: no flag found in its --help output (is the parser of this test out of date?)"
        ));
    }
    for flag in real.iter().filter(|f| f.as_str() != "--help") {
        if !documented.contains(flag) {
            problems.push(format!(
                "{bin}: flag {flag} is missing from the README's `### `{bin}`` table: add a row for it"
            ));
        }
    }
    for flag in documented.iter().filter(|f| f.as_str() != "--help") {
        if !real.contains(flag) {
            problems.push(format!(
                "{bin}: the README documents {flag}, which `{bin} --help` does not list: remove or rename the row"
            ));
        }
    }
    for env in help_envs(help) {
        if !section.contains(&format!("`{env}`")) {
            problems.push(format!(
                "{bin}: environment variable {env} is missing from the README's `### `{bin}`` section"
            ));
        }
    }
    problems
}

/// Binary targets of the workspace's packages, from `cargo metadata`.
fn workspace_binaries() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut bins: Vec<String> = meta["packages"]
        .as_array()
        .expect("cargo metadata has packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    bins.sort();
    bins.dedup();
    bins
}

/// `target/<profile>/`: the parent of the `deps/` directory this test runs from.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps/")
        .to_path_buf()
}

/// The built binary `bin`, if present.
fn built_binary(bin: &str) -> Option<PathBuf> {
    if bin == "crdgen" {
        return Some(PathBuf::from(env!("CARGO_BIN_EXE_crdgen")));
    }
    let path = profile_dir().join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
}

/// `bin --help`, run with an empty environment so that no `[env: NAME=value]` leaks in.
fn help_of(path: &Path) -> String {
    let out = Command::new(path)
        .arg("--help")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --help: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} --help exited with {}: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

fn config_section() -> &'static str {
    section(README, CONFIG_HEADING).expect("README has a `## Configuration reference` section")
}

fn binary_section(bin: &str) -> Option<&'static str> {
    section(config_section(), &format!("### `{bin}`"))
}

/// The single line of the "run the system" command.
fn run_command() -> &'static str {
    let two = section(
        README,
        "## The two commands (fresh Debian 12 machine, as root, with a Rust toolchain)",
    )
    .expect("README keeps its `## The two commands` section");
    two.lines()
        .find(|l| l.starts_with("cargo build"))
        .expect("the run command starts with `cargo build`")
}

#[test]
fn configuration_reference_matches_every_binarys_help() {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for bin in workspace_binaries() {
        let Some(section) = binary_section(&bin) else {
            problems.push(format!(
                "{bin}: the README's configuration reference has no `### `{bin}`` section"
            ));
            continue;
        };
        let Some(path) = built_binary(&bin) else {
            println!(
                "SKIPPED {bin}: not built in {} yet (`cargo build --workspace` or `cargo test --workspace --all-targets` builds it)",
                profile_dir().display()
            );
            continue;
        };
        problems.extend(reference_mismatches(&bin, &help_of(&path), section));
        checked.push(bin);
    }
    println!("checked --help of: {}", checked.join(", "));
    assert!(
        checked.iter().any(|b| b == "crdgen"),
        "crdgen (this package's binary) must always be checked"
    );
    assert!(
        problems.is_empty(),
        "README is out of date:\n{}",
        problems.join("\n")
    );
}

#[test]
fn run_command_builds_once_and_runs_the_system_story() {
    let cmd = run_command();
    assert_eq!(
        cmd.matches("cargo build --release --workspace").count(),
        1,
        "the run command builds the release workspace exactly once: {cmd}"
    );
    assert!(
        cmd.trim_end().ends_with("./target/release/cstor-local"),
        "the run command ends by running the system story (`./target/release/cstor-local`): {cmd}"
    );
    let bins = workspace_binaries();
    for named in cmd.split("./target/release/").skip(1) {
        let name = named.split_whitespace().next().unwrap_or("");
        assert!(
            bins.iter().any(|b| b == name),
            "the run command runs {name}, which is not a binary of the workspace"
        );
    }
}

#[test]
fn test_command_is_the_one_ci_runs() {
    assert!(
        README.contains(&format!("```sh\n{TEST_COMMAND}\n```")),
        "README must show the test command `{TEST_COMMAND}` in its own sh block"
    );
    assert!(
        CI_RUN.lines().any(|l| l.trim() == TEST_COMMAND),
        ".ci/run must run the README's test command `{TEST_COMMAND}`"
    );
}

#[test]
fn architecture_picture_shows_every_component() {
    assert!(
        README.contains("(docs/architecture.svg)"),
        "README embeds docs/architecture.svg"
    );
    assert!(
        ARCH_SVG.contains("<svg"),
        "docs/architecture.svg is an SVG (re-render: dot -Tsvg docs/architecture.dot -o docs/architecture.svg)"
    );
    // Graphviz writes `-` as `&#45;` in SVG text.
    let svg_text = ARCH_SVG.replace("&#45;", "-");
    for bin in workspace_binaries()
        .iter()
        // Tools (run by hand or as a Job) and the engine stand-in's programs, not deployed
        // components.
        .filter(|b| {
            b.as_str() != "crdgen"
                && b.as_str() != "cstor-migrate"
                && b.as_str() != "cstor-local"
                && !b.starts_with("cstor-standin-")
        })
    {
        assert!(
            ARCH_DOT.contains(bin.as_str()),
            "docs/architecture.dot does not show {bin}"
        );
        assert!(
            svg_text.contains(bin.as_str()),
            "docs/architecture.svg does not show {bin}: re-render it from docs/architecture.dot"
        );
    }
}

#[test]
fn mismatch_check_reports_missing_stale_flags_and_envs() {
    let help = "Does things\n\nUsage: demo [OPTIONS] --namespace <NAMESPACE>\n\nOptions:\n      \
                --namespace <NAMESPACE>\n          Namespace [env: OPENEBS_NAMESPACE=]\n      \
                --resync-interval <SECS>  Seconds [env: RESYNC_INTERVAL=] [default: 30]\n  \
                -h, --help\n          Print help\n  -V, --version  Print version\n";
    assert_eq!(
        help_flags(help),
        ["--help", "--namespace", "--resync-interval", "--version"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        help_envs(help),
        ["OPENEBS_NAMESPACE", "RESYNC_INTERVAL"]
            .map(String::from)
            .into()
    );
    let complete = "| flag | env |\n|---|---|\n| `--namespace` | `OPENEBS_NAMESPACE` |\n\
                    | `--resync-interval` | `RESYNC_INTERVAL` |\n| `--help`, `--version` | |\n";
    assert_eq!(
        reference_mismatches("demo", help, complete),
        Vec::<String>::new()
    );

    let incomplete = "| `--namespace` | `OPENEBS_NAMESPACE` |\n| `--old-flag` | |\n\
                      | `--help`, `--version` | |\n";
    let problems = reference_mismatches("demo", help, incomplete);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("--resync-interval is missing"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("--old-flag"), "{problems:#?}");
    assert!(
        problems[2].contains("RESYNC_INTERVAL is missing"),
        "{problems:#?}"
    );

    // A hand-written usage line (crdgen's) counts too.
    assert_eq!(
        help_flags("usage: crdgen [--stdout | --check] [--dir <dir>]"),
        ["--check", "--dir", "--stdout"].map(String::from).into()
    );
}

#[test]
fn sections_end_at_the_next_heading_of_their_level() {
    let text = "# t\n## A\na\n### `x`\nx1\n### `y`\ny1\n## B\nb\n";
    assert_eq!(
        section(text, "## A"),
        Some("\na\n### `x`\nx1\n### `y`\ny1\n")
    );
    assert_eq!(section(text, "### `x`"), Some("\nx1\n"));
    assert_eq!(section(text, "### `y`"), Some("\ny1\n"));
    assert_eq!(section(text, "## C"), None);
}

/// Text files of the repository (sources, docs, manifests, scripts), `target/` and `.git/` left out.
fn repository_text_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | ".git") {
                    dirs.push(path);
                }
            } else if ["rs", "md", "yaml", "yml", "sh", "toml", "dot"]
                .iter()
                .any(|ext| name.ends_with(&format!(".{ext}")))
            {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn nothing_cites_reference_sections_outside_the_repository() {
    // Section signs and the reference notes' file names point at text a reader of this
    // repository does not have (spelt in pieces here so that this file does not match).
    let banned = [
        "\u{a7}",
        concat!("upstream-operators", ".md"),
        concat!("upstream-csi", ".md"),
        concat!("upstream-backup", ".md"),
        concat!("upstream-migration", ".md"),
        concat!("test-environment", ".md"),
        concat!("style-models", ".md"),
        concat!("shared/", "reference"),
    ];
    let mut problems = Vec::new();
    let files = repository_text_files();
    assert!(files.len() > 50, "found only {} files", files.len());
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if let Some(b) = banned.iter().find(|b| line.contains(*b)) {
                problems.push(format!("{}:{}: cites {b:?}", file.display(), n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
