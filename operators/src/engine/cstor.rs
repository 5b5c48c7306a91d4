//! [`CstorEngine`]: upstream's `zpool`/`zfs` command lines and the parsing of their output.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use async_trait::async_trait;
use cstor_api::exec::{Cmd, Fd, Output, Runner};

use super::{
    DataEngine,
    error::EngineError,
    import::parse_import_listing,
    labels,
    stats::{SnapshotList, parse_listsnap, parse_stats},
    topology::{PoolTopology, parse_dump, parse_status},
    types::*,
    units::Size,
};
use crate::engine::stats::ReplicaStats;

const ZPOOL: &str = "zpool";
const ZFS: &str = "zfs";

/// Deadline of one `zfs send`/`zfs recv` stream: a whole volume over the network.
const TRANSFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The production data engine: runs the cStor `zpool`/`zfs` builds through a [`Runner`].
#[derive(Clone, Debug)]
pub struct CstorEngine {
    runner: Arc<dyn Runner>,
    cache_file: String,
}

impl CstorEngine {
    /// An engine using upstream's cache file, [`DEFAULT_CACHE_FILE`].
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        Self {
            runner,
            cache_file: DEFAULT_CACHE_FILE.to_string(),
        }
    }

    /// Uses another pool cache file (tests keep theirs in a temporary directory).
    pub fn with_cache_file(mut self, path: impl Into<String>) -> Self {
        self.cache_file = path.into();
        self
    }

    pub fn cache_file(&self) -> &str {
        &self.cache_file
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, EngineError> {
        Ok(self.runner.run(cmd).await?)
    }

    /// Runs and turns a non-zero exit into a classified error.
    async fn run_ok(&self, cmd: &Cmd) -> Result<Output, EngineError> {
        let out = self.run(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(classify(cmd, &out))
        }
    }

    /// Runs a command whose only output is a list of names, one per line.
    async fn names(&self, cmd: &Cmd) -> Result<Vec<String>, EngineError> {
        Ok(lines(&self.run_ok(cmd).await?.stdout))
    }

    async fn probe_refuses(&self, pool: &str, dir: Option<&Path>) -> Result<(), EngineError> {
        let (pools, output) = self.import_listing(dir).await?;
        if pools.iter().any(|p| p.name == pool) {
            return Err(EngineError::PoolImportable {
                pool: pool.to_string(),
                output: output.trim().to_string(),
            });
        }
        Ok(())
    }

    async fn import_listing(
        &self,
        dir: Option<&Path>,
    ) -> Result<(Vec<ImportablePool>, String), EngineError> {
        let mut cmd = Cmd::new(ZPOOL).arg("import");
        if let Some(d) = dir {
            cmd = cmd.arg("-d").arg(path_arg("device directory", d)?);
        }
        let out = self.run(&cmd).await?;
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let pools = parse_import_listing(&text);
        if out.success() || !pools.is_empty() {
            return Ok((pools, text));
        }
        let msg = message(&out);
        if msg.is_empty() || msg.contains("no pools available") {
            Ok((Vec::new(), text))
        } else {
            Err(classify(&cmd, &out))
        }
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn message(out: &Output) -> String {
    if out.stderr.trim().is_empty() {
        out.stdout.trim().to_string()
    } else {
        out.stderr.trim().to_string()
    }
}

/// The first `'quoted'` word of a message (`cannot open 'x': no such pool`).
fn quoted(msg: &str) -> Option<String> {
    let start = msg.find('\'')? + 1;
    let len = msg[start..].find('\'')?;
    Some(msg[start..start + len].to_string())
}

/// The CLI does not know a sub-command (`unrecognized command 'dump'`).
fn unrecognized_command(out: &Output) -> bool {
    message(out).contains("unrecognized command")
}

/// The CLI rejected an option or property in its usage check (old `zpool get` without
/// `-H`/`-p`, a property the build does not have). Exit code 2 is the usage exit.
fn usage_rejected(out: &Output, what: &str) -> bool {
    let msg = message(out);
    out.code == Some(2)
        && (msg.contains(&format!("invalid property '{what}'"))
            || msg.contains(&format!("invalid option '{what}'")))
}

fn classify(cmd: &Cmd, out: &Output) -> EngineError {
    let msg = message(out);
    // The object named on the line that carries the reason (zfs-fuse prints
    // "Defaulting to 4K blocksize ... for '<disk>'" lines before it).
    let name_on = |phrase: &str| {
        msg.lines()
            .find(|l| l.contains(phrase))
            .and_then(quoted)
            .unwrap_or_default()
    };
    if msg.contains("unrecognized command") {
        return EngineError::Unsupported {
            command: cmd.line(),
            detail: msg.lines().next().unwrap_or_default().to_string(),
        };
    }
    if msg.contains("no such pool") && !msg.contains("no such pool available") {
        return EngineError::PoolNotFound {
            pool: name_on("no such pool"),
        };
    }
    for (phrase, make) in [
        (
            "pool already exists",
            (|n| EngineError::PoolExists { pool: n }) as fn(String) -> EngineError,
        ),
        ("pool is busy", |n| EngineError::PoolBusy { pool: n }),
        ("dataset already exists", |n| EngineError::DatasetExists {
            dataset: n,
        }),
        ("dataset does not exist", |n| EngineError::DatasetNotFound {
            dataset: n,
        }),
    ] {
        if msg.contains(phrase) {
            return make(name_on(phrase));
        }
    }
    EngineError::Failed {
        command: cmd.line(),
        code: out.code,
        message: msg,
    }
}

/// A name that goes on a command line: not empty, no whitespace or NUL, not an option.
fn name_arg(field: &str, value: &str) -> Result<String, EngineError> {
    if value.is_empty() {
        return Err(EngineError::invalid(field, "must not be empty"));
    }
    if value.starts_with('-') {
        return Err(EngineError::invalid(
            field,
            format!("`{value}` must not start with `-`"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err(EngineError::invalid(
            field,
            format!("`{value}` must not contain whitespace"),
        ));
    }
    Ok(value.to_string())
}

fn path_arg(field: &str, path: &Path) -> Result<String, EngineError> {
    let s = path
        .to_str()
        .ok_or_else(|| EngineError::invalid(field, format!("{path:?} is not UTF-8")))?;
    name_arg(field, s)
}

/// `key=value` for `-o`/`zfs set`.
fn prop_arg(key: &str, value: &str) -> Result<String, EngineError> {
    let key = name_arg("property name", key)?;
    if key.contains('=') {
        return Err(EngineError::invalid(
            "property name",
            format!("`{key}` must not contain `=`"),
        ));
    }
    if value.contains('\0') || value.contains('\n') {
        return Err(EngineError::invalid(
            format!("value of property {key}"),
            "must not contain NUL or newline",
        ));
    }
    Ok(format!("{key}={value}"))
}

fn group_args(group: &RaidGroup, what: &str) -> Result<Vec<String>, EngineError> {
    if let Some(rule) = group
        .raid_type
        .group_type()
        .disk_count_error(group.disks.len())
    {
        return Err(EngineError::invalid(what, rule));
    }
    let mut args: Vec<String> = group
        .raid_type
        .vdev_keyword()
        .map(str::to_string)
        .into_iter()
        .collect();
    for d in &group.disks {
        args.push(name_arg(&format!("{what} disk"), d)?);
    }
    Ok(args)
}

fn size_field(command: &Cmd, text: Option<&str>, what: &str) -> Result<Size, EngineError> {
    let text =
        text.ok_or_else(|| EngineError::parse(command.line(), format!("no {what} value")))?;
    Size::parse(text).map_err(|e| EngineError::parse(command.line(), format!("{what}: {e}")))
}

/// `zfs destroy` on a missing dataset: fine for an idempotent destroy.
fn destroy_result(cmd: &Cmd, out: &Output) -> Result<(), EngineError> {
    if out.success() || message(out).contains("dataset does not exist") {
        return Ok(());
    }
    Err(classify(cmd, out))
}

#[async_trait]
impl DataEngine for CstorEngine {
    /// `zpool get -H -p -o value name <pool>`; on a CLI without `-H` on `zpool get`
    /// (zfs-fuse): `zpool list -H -o name <pool>`.
    async fn pool_exists(&self, pool: &str) -> Result<bool, EngineError> {
        let pool = name_arg("pool name", pool)?;
        let cmd = Cmd::new(ZPOOL).args(["get", "-H", "-p", "-o", "value", "name", &pool]);
        let mut out = self.run(&cmd).await?;
        let mut used = cmd;
        if usage_rejected(&out, "-H") {
            used = Cmd::new(ZPOOL).args(["list", "-H", "-o", "name", &pool]);
            out = self.run(&used).await?;
        }
        if out.success() {
            return Ok(true);
        }
        match classify(&used, &out) {
            EngineError::PoolNotFound { .. } => Ok(false),
            e => Err(e),
        }
    }

    /// `zpool get -Hp name -o name`; legacy: `zpool list -H -o name`.
    async fn list_pools(&self) -> Result<Vec<String>, EngineError> {
        let cmd = Cmd::new(ZPOOL).args(["get", "-Hp", "name", "-o", "name"]);
        let out = self.run(&cmd).await?;
        if usage_rejected(&out, "-Hp") {
            let legacy = Cmd::new(ZPOOL).args(["list", "-H", "-o", "name"]);
            let names = self.names(&legacy).await?;
            return Ok(names
                .into_iter()
                .filter(|n| n != "no pools available")
                .collect());
        }
        if out.success() {
            return Ok(lines(&out.stdout));
        }
        Err(classify(&cmd, &out))
    }

    /// `zpool import [-d <dir>]`.
    async fn importable_pools(
        &self,
        dev_dir: Option<&Path>,
    ) -> Result<Vec<ImportablePool>, EngineError> {
        Ok(self.import_listing(dev_dir).await?.0)
    }

    /// Existence check; with `existing_name`, the probe `zpool import [-d dir]` (the new name
    /// importable ⇒ already renamed, import by the new name); then
    /// `zpool import -o cachefile=<c> -c <c> [<existing>] <pool>`, else
    /// `zpool import -o cachefile=<c> [-d <dir>] [<existing>] <pool>`.
    async fn import_pool(&self, req: &ImportRequest) -> Result<ImportOutcome, EngineError> {
        let pool = name_arg("pool name", &req.pool)?;
        if self.pool_exists(&pool).await? {
            return Ok(ImportOutcome::AlreadyImported);
        }
        let mut existing = match &req.existing_name {
            Some(e) if !e.is_empty() => Some(name_arg("existing pool name", e)?),
            _ => None,
        };
        if existing.is_some() {
            let (pools, _) = self.import_listing(req.dev_dir.as_deref()).await?;
            if pools.iter().any(|p| p.name == pool) {
                existing = None;
            }
        }
        let names: Vec<String> = existing.iter().cloned().chain([pool.clone()]).collect();
        let cache = name_arg("cache file", &self.cache_file)?;
        let by_cache = Cmd::new(ZPOOL)
            .args(["import", "-o", &format!("cachefile={cache}"), "-c", &cache])
            .args(names.clone());
        if self.run(&by_cache).await?.success() {
            return Ok(ImportOutcome::Imported {
                renamed_from: existing,
                from_cache_file: true,
            });
        }
        let mut by_scan = Cmd::new(ZPOOL).args(["import", "-o", &format!("cachefile={cache}")]);
        if let Some(d) = &req.dev_dir {
            by_scan = by_scan.arg("-d").arg(path_arg("device directory", d)?);
        }
        let by_scan = by_scan.args(names);
        let out = self.run(&by_scan).await?;
        if out.success() {
            return Ok(ImportOutcome::Imported {
                renamed_from: existing,
                from_cache_file: false,
            });
        }
        let msg = message(&out);
        if msg.contains("no such pool available") || msg.contains("no pools available") {
            return Ok(ImportOutcome::NotFound);
        }
        Err(classify(&by_scan, &out))
    }

    /// Probe (`zpool import -d <dir>` when a directory is given, and `zpool import`), then
    /// `zpool create -o cachefile=<c> -O compression=<c|lz4> -O canmount=off <pool> [<type>]
    /// <disks>`, then `zpool add` for every other data group and `zpool add <pool> log` for
    /// write-cache groups (add failures are collected).
    async fn create_pool(&self, spec: &PoolSpec) -> Result<(), EngineError> {
        let pool = name_arg("pool name", &spec.name)?;
        let Some(first) = spec.data_groups.first() else {
            return Err(EngineError::invalid(
                "data raid groups",
                "a pool needs at least one data raid group",
            ));
        };
        let first_args = group_args(first, "data raid group 0")?;
        for (i, g) in spec.data_groups.iter().enumerate().skip(1) {
            group_args(g, &format!("data raid group {i}"))?;
        }
        for (i, g) in spec.write_cache_groups.iter().enumerate() {
            group_args(g, &format!("write-cache raid group {i}"))?;
        }
        let compression = match spec.compression.as_deref() {
            Some(c) if !c.is_empty() => c,
            _ => "lz4",
        };
        let cache = name_arg("cache file", &self.cache_file)?;

        if let Some(dir) = &spec.dev_dir {
            self.probe_refuses(&pool, Some(dir)).await?;
        }
        self.probe_refuses(&pool, None).await?;

        let create = Cmd::new(ZPOOL)
            .args(["create", "-o", &format!("cachefile={cache}")])
            .args(["-O", &prop_arg("compression", compression)?])
            .args(["-O", "canmount=off", &pool])
            .args(first_args);
        self.run_ok(&create).await?;

        let mut failures = Vec::new();
        let rest = spec.data_groups[1..]
            .iter()
            .map(|g| (VdevClass::Data, g))
            .chain(
                spec.write_cache_groups
                    .iter()
                    .map(|g| (VdevClass::WriteCache, g)),
            );
        for (class, g) in rest {
            if let Err(e) = self.add_raid_group(&pool, class, g).await {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError::RaidGroupsNotAdded { pool, failures })
        }
    }

    /// `zpool add <pool> [log] [<type>] <disks>`.
    async fn add_raid_group(
        &self,
        pool: &str,
        class: VdevClass,
        group: &RaidGroup,
    ) -> Result<(), EngineError> {
        let pool = name_arg("pool name", pool)?;
        let mut cmd = Cmd::new(ZPOOL).args(["add", &pool]);
        if class == VdevClass::WriteCache {
            cmd = cmd.arg("log");
        }
        let cmd = cmd.args(group_args(group, "raid group")?);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zpool replace <pool> <old> <new>`.
    async fn replace_disk(&self, pool: &str, old: &str, new: &str) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZPOOL).args([
            "replace".to_string(),
            name_arg("pool name", pool)?,
            name_arg("old disk", old)?,
            name_arg("new disk", new)?,
        ]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zpool labelclear -f <device>`; on a CLI without `labelclear` the four labels are
    /// zeroed directly (the same effect).
    async fn labelclear(&self, device: &str) -> Result<(), EngineError> {
        let device = name_arg("device", device)?;
        let cmd = Cmd::new(ZPOOL).args(["labelclear", "-f", &device]);
        let out = self.run(&cmd).await?;
        if out.success() {
            return Ok(());
        }
        if unrecognized_command(&out) {
            return tokio::task::spawn_blocking(move || labels::wipe_labels(&device))
                .await
                .map_err(|e| EngineError::Io {
                    action: "clear labels of",
                    path: cmd.args[2].clone(),
                    source: std::io::Error::other(e),
                })?;
        }
        Err(classify(&cmd, &out))
    }

    /// `zpool destroy <pool>`; "no such pool" is success.
    async fn destroy_pool(&self, pool: &str) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZPOOL).args(["destroy".to_string(), name_arg("pool name", pool)?]);
        match self.run_ok(&cmd).await {
            Ok(_) | Err(EngineError::PoolNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `zpool export <pool>`; "no such pool" is success.
    async fn export_pool(&self, pool: &str) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZPOOL).args(["export".to_string(), name_arg("pool name", pool)?]);
        match self.run_ok(&cmd).await {
            Ok(_) | Err(EngineError::PoolNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `zpool get -H -o value health,io.openebs:readonly <pool>`; legacy (no `-H`, no pool
    /// user properties): `zpool list -H -o health <pool>` and read-only off.
    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, EngineError> {
        let pool = name_arg("pool name", pool)?;
        let cmd = Cmd::new(ZPOOL).args([
            "get",
            "-H",
            "-o",
            "value",
            "health,io.openebs:readonly",
            &pool,
        ]);
        let out = self.run(&cmd).await?;
        if usage_rejected(&out, "-H") {
            let legacy = Cmd::new(ZPOOL).args(["list", "-H", "-o", "health", &pool]);
            let out = self.run_ok(&legacy).await?;
            let health = lines(&out.stdout)
                .into_iter()
                .next()
                .ok_or_else(|| EngineError::parse(legacy.line(), "no health value"))?;
            return Ok(PoolHealth {
                health,
                read_only: false,
            });
        }
        if !out.success() {
            return Err(classify(&cmd, &out));
        }
        let values = lines(&out.stdout);
        let health = values
            .first()
            .cloned()
            .ok_or_else(|| EngineError::parse(cmd.line(), "no health value"))?;
        Ok(PoolHealth {
            health,
            read_only: values.get(1).is_some_and(|v| v == "on"),
        })
    }

    /// `zpool set io.openebs:readonly=on|off <pool>`.
    async fn set_pool_read_only(&self, pool: &str, read_only: bool) -> Result<(), EngineError> {
        let value = if read_only { "on" } else { "off" };
        let cmd = Cmd::new(ZPOOL).args([
            "set".to_string(),
            prop_arg("io.openebs:readonly", value)?,
            name_arg("pool name", pool)?,
        ]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs get -H -o value used,logicalused,available <pool>`; on a zfs without
    /// `logicalused`: `zfs get -H -o value used,available <pool>`.
    async fn pool_capacity(&self, pool: &str) -> Result<PoolCapacity, EngineError> {
        let pool = name_arg("pool name", pool)?;
        let cmd = Cmd::new(ZFS).args([
            "get",
            "-H",
            "-o",
            "value",
            "used,logicalused,available",
            &pool,
        ]);
        let out = self.run(&cmd).await?;
        let not_found = |e| match e {
            EngineError::DatasetNotFound { .. } => EngineError::PoolNotFound { pool: pool.clone() },
            e => e,
        };
        if usage_rejected(&out, "logicalused") {
            let legacy = Cmd::new(ZFS).args(["get", "-H", "-o", "value", "used,available", &pool]);
            let out = self.run_ok(&legacy).await.map_err(not_found)?;
            let v = lines(&out.stdout);
            return Ok(PoolCapacity {
                used: size_field(&legacy, v.first().map(String::as_str), "used")?,
                logical_used: None,
                available: size_field(&legacy, v.get(1).map(String::as_str), "available")?,
            });
        }
        if !out.success() {
            return Err(not_found(classify(&cmd, &out)));
        }
        let v = lines(&out.stdout);
        Ok(PoolCapacity {
            used: size_field(&cmd, v.first().map(String::as_str), "used")?,
            logical_used: Some(size_field(
                &cmd,
                v.get(1).map(String::as_str),
                "logicalused",
            )?),
            available: size_field(&cmd, v.get(2).map(String::as_str), "available")?,
        })
    }

    /// `zpool dump <pool>`; on a CLI without `dump`: `zpool status <pool>`.
    async fn pool_topology(&self, pool: &str) -> Result<PoolTopology, EngineError> {
        let pool = name_arg("pool name", pool)?;
        let cmd = Cmd::new(ZPOOL).args(["dump", &pool]);
        let out = self.run(&cmd).await?;
        if out.success() {
            return parse_dump(&out.stdout).map_err(|e| EngineError::parse(cmd.line(), e));
        }
        if !unrecognized_command(&out) {
            return Err(classify(&cmd, &out));
        }
        let status = Cmd::new(ZPOOL).args(["status", &pool]);
        let out = self.run_ok(&status).await?;
        parse_status(&out.stdout).map_err(|e| EngineError::parse(status.line(), e))
    }

    /// `zfs get -Hp name -o name`.
    async fn list_datasets(&self) -> Result<Vec<String>, EngineError> {
        let cmd = Cmd::new(ZFS).args(["get", "-Hp", "name", "-o", "name"]);
        self.names(&cmd).await
    }

    /// `zfs list -H -o name`, keeping `<pool>/...` names without `_rebuild_clone`.
    async fn provisioned_replicas(&self, pool: &str) -> Result<Vec<String>, EngineError> {
        let prefix = format!("{}/", name_arg("pool name", pool)?);
        let cmd = Cmd::new(ZFS).args(["list", "-H", "-o", "name"]);
        Ok(self
            .names(&cmd)
            .await?
            .into_iter()
            .filter(|n| n.starts_with(&prefix) && !n.contains("_rebuild_clone"))
            .collect())
    }

    /// Membership in [`Self::list_datasets`], as upstream checks it.
    async fn dataset_exists(&self, dataset: &str) -> Result<bool, EngineError> {
        let dataset = name_arg("dataset", dataset)?;
        Ok(self.list_datasets().await?.contains(&dataset))
    }

    /// `zfs get -H -o property,value <p1,p2,...> <dataset>` (`-` and empty values are unset).
    async fn get_properties(
        &self,
        dataset: &str,
        properties: &[&str],
    ) -> Result<BTreeMap<String, Option<String>>, EngineError> {
        let dataset = name_arg("dataset", dataset)?;
        if properties.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut keys = Vec::new();
        for p in properties {
            let p = name_arg("property name", p)?;
            if p.contains(',') {
                return Err(EngineError::invalid(
                    "property name",
                    format!("`{p}` must not contain `,`"),
                ));
            }
            keys.push(p);
        }
        let cmd = Cmd::new(ZFS).args([
            "get",
            "-H",
            "-o",
            "property,value",
            &keys.join(","),
            &dataset,
        ]);
        let out = self.run_ok(&cmd).await?;
        let mut found = BTreeMap::new();
        for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('\t').ok_or_else(|| {
                EngineError::parse(
                    cmd.line(),
                    format!("line `{line}` is not `property<TAB>value`"),
                )
            })?;
            let v = v.trim_end_matches(['\r', '\n']);
            // uZFS prints an unset user property as an empty value, OpenZFS as `-`.
            found.insert(
                k.to_string(),
                (v != "-" && !v.is_empty()).then(|| v.to_string()),
            );
        }
        for k in &keys {
            if !found.contains_key(k) {
                return Err(EngineError::parse(
                    cmd.line(),
                    format!("no value for `{k}`"),
                ));
            }
        }
        Ok(found)
    }

    /// `zfs set <key>=<value> <dataset>`.
    async fn set_property(&self, dataset: &str, key: &str, value: &str) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZFS).args([
            "set".to_string(),
            prop_arg(key, value)?,
            name_arg("dataset", dataset)?,
        ]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs create -b 4K -s -o compression=on -o quorum=<on|off> -o io.openebs:zvol_replica_id=<id>
    /// -o io.openebs:volname=<cvr> [-o io.openebs:zvol_workers=<n>] [-o io.openebs:targetip=<ip>]
    /// -V <capacity without trailing i> <pool>/<volume>`.
    async fn create_replica(&self, spec: &ReplicaVolumeSpec) -> Result<(), EngineError> {
        let dataset = format!(
            "{}/{}",
            name_arg("pool name", &spec.pool)?,
            name_arg("volume name", &spec.volume)?
        );
        let capacity = name_arg("capacity", &spec.capacity)?;
        let capacity = capacity.strip_suffix('i').unwrap_or(&capacity).to_string();
        if !capacity.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(EngineError::invalid(
                "capacity",
                format!("`{}` is not a size like 5Gi", spec.capacity),
            ));
        }
        name_arg("replica id", &spec.replica_id)?;
        let mut cmd = Cmd::new(ZFS)
            .args(["create", "-b", "4K", "-s", "-o", "compression=on", "-o"])
            .arg(prop_arg("quorum", if spec.quorum { "on" } else { "off" })?)
            .arg("-o")
            .arg(prop_arg("io.openebs:zvol_replica_id", &spec.replica_id)?)
            .arg("-o")
            .arg(prop_arg(
                "io.openebs:volname",
                &name_arg("cvr name", &spec.cvr_name)?,
            )?);
        if let Some(w) = spec.zvol_workers.as_deref().filter(|w| !w.is_empty()) {
            cmd = cmd.arg("-o").arg(prop_arg("io.openebs:zvol_workers", w)?);
        }
        if let Some(ip) = spec.target_ip.as_deref().filter(|ip| !ip.is_empty()) {
            cmd = cmd.arg("-o").arg(prop_arg(
                "io.openebs:targetip",
                &name_arg("target ip", ip)?,
            )?);
        }
        let cmd = cmd.args(["-V", &capacity, &dataset]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs clone -o compression=on -o io.openebs:targetip=<ip> -o quorum=on
    /// [-o io.openebs:zvol_workers=<n>] -o io.openebs:volname=<cvr>
    /// -o io.openebs:zvol_replica_id=<id> <pool>/<src>@<snap> <pool>/<volume>`.
    async fn clone_replica(&self, spec: &ReplicaCloneSpec) -> Result<(), EngineError> {
        let pool = name_arg("pool name", &spec.pool)?;
        let target = format!("{pool}/{}", name_arg("volume name", &spec.volume)?);
        let origin = format!(
            "{pool}/{}@{}",
            name_arg("source volume", &spec.source_volume)?,
            name_arg("snapshot", &spec.snapshot)?
        );
        name_arg("replica id", &spec.replica_id)?;
        let mut cmd = Cmd::new(ZFS)
            .args(["clone", "-o", "compression=on", "-o"])
            .arg(prop_arg(
                "io.openebs:targetip",
                &name_arg("target ip", &spec.target_ip)?,
            )?)
            .args(["-o", "quorum=on"]);
        if let Some(w) = spec.zvol_workers.as_deref().filter(|w| !w.is_empty()) {
            cmd = cmd.arg("-o").arg(prop_arg("io.openebs:zvol_workers", w)?);
        }
        let cmd = cmd
            .arg("-o")
            .arg(prop_arg(
                "io.openebs:volname",
                &name_arg("cvr name", &spec.cvr_name)?,
            )?)
            .arg("-o")
            .arg(prop_arg("io.openebs:zvol_replica_id", &spec.replica_id)?)
            .args([origin, target]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs destroy -R <dataset>`; "dataset does not exist" is success.
    async fn destroy_dataset(&self, dataset: &str) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZFS).args([
            "destroy".to_string(),
            "-R".to_string(),
            name_arg("dataset", dataset)?,
        ]);
        let out = self.run(&cmd).await?;
        destroy_result(&cmd, &out)
    }

    /// `zfs create [-o k=v]... <dataset>`.
    async fn create_filesystem(
        &self,
        dataset: &str,
        properties: &[(&str, &str)],
    ) -> Result<(), EngineError> {
        let mut cmd = Cmd::new(ZFS).arg("create");
        for (k, v) in properties {
            cmd = cmd.arg("-o").arg(prop_arg(k, v)?);
        }
        let cmd = cmd.arg(name_arg("dataset", dataset)?);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs clone [-o k=v]... <snapshot> <target>`.
    async fn clone_dataset(
        &self,
        snapshot: &str,
        target: &str,
        properties: &[(&str, &str)],
    ) -> Result<(), EngineError> {
        let snapshot = name_arg("snapshot", snapshot)?;
        if !snapshot.contains('@') {
            return Err(EngineError::invalid(
                "snapshot",
                format!("`{snapshot}` is not of the form dataset@snapshot"),
            ));
        }
        let mut cmd = Cmd::new(ZFS).arg("clone");
        for (k, v) in properties {
            cmd = cmd.arg("-o").arg(prop_arg(k, v)?);
        }
        let cmd = cmd.arg(snapshot).arg(name_arg("clone name", target)?);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs snapshot <dataset>@<snapshot>`.
    async fn create_snapshot(&self, dataset: &str, snapshot: &str) -> Result<(), EngineError> {
        let full = snapshot_name(dataset, snapshot)?;
        let cmd = Cmd::new(ZFS).args(["snapshot", &full]);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs destroy <dataset>@<snapshot>`; missing is success.
    async fn destroy_snapshot(&self, dataset: &str, snapshot: &str) -> Result<(), EngineError> {
        let full = snapshot_name(dataset, snapshot)?;
        let cmd = Cmd::new(ZFS).args(["destroy", &full]);
        let out = self.run(&cmd).await?;
        if !out.success() && message(&out).contains("could not find any snapshots to destroy") {
            return Ok(());
        }
        destroy_result(&cmd, &out)
    }

    /// `zfs send [-i <dataset>@<previous>] <dataset>@<snapshot>`, the stream written to `out`.
    async fn send_snapshot(
        &self,
        dataset: &str,
        snapshot: &str,
        previous: Option<&str>,
        out: Fd,
    ) -> Result<(), EngineError> {
        let full = snapshot_name(dataset, snapshot)?;
        let mut cmd = Cmd::new(ZFS).arg("send");
        if let Some(prev) = previous {
            cmd = cmd.args(["-i".to_string(), snapshot_name(dataset, prev)?]);
        }
        let cmd = cmd.arg(full).stdout_to(out).timeout(TRANSFER_TIMEOUT);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs recv -F <dataset>`, the stream read from `input`.
    async fn receive(&self, dataset: &str, input: Fd) -> Result<(), EngineError> {
        let cmd = Cmd::new(ZFS)
            .args(["recv", "-F", &name_arg("dataset", dataset)?])
            .stdin_from(input)
            .timeout(TRANSFER_TIMEOUT);
        self.run_ok(&cmd).await.map(drop)
    }

    /// `zfs stats [<dataset>]`.
    async fn replica_stats(&self, dataset: Option<&str>) -> Result<Vec<ReplicaStats>, EngineError> {
        let mut cmd = Cmd::new(ZFS).arg("stats");
        if let Some(d) = dataset {
            cmd = cmd.arg(name_arg("dataset", d)?);
        }
        let out = self.run_ok(&cmd).await?;
        parse_stats(&out.stdout).map_err(|e| EngineError::parse(cmd.line(), e))
    }

    /// `zfs listsnap <dataset>` (exit 11 = busy, see [`EngineError::is_try_again`]).
    async fn list_snapshots(&self, dataset: &str) -> Result<SnapshotList, EngineError> {
        let cmd = Cmd::new(ZFS).args(["listsnap".to_string(), name_arg("dataset", dataset)?]);
        let out = self.run_ok(&cmd).await?;
        parse_listsnap(&out.stdout).map_err(|e| EngineError::parse(cmd.line(), e))
    }

    /// `zfs get -H -p -o value logicalreferenced,used <dataset>@<snapshot>`.
    async fn snapshot_sizes(
        &self,
        dataset: &str,
        snapshot: &str,
    ) -> Result<SnapshotSizes, EngineError> {
        let full = snapshot_name(dataset, snapshot)?;
        let cmd = Cmd::new(ZFS).args([
            "get",
            "-H",
            "-p",
            "-o",
            "value",
            "logicalreferenced,used",
            &full,
        ]);
        let out = self.run_ok(&cmd).await?;
        let v = lines(&out.stdout);
        let num = |i: usize, what: &str| -> Result<u64, EngineError> {
            let text = v
                .get(i)
                .ok_or_else(|| EngineError::parse(cmd.line(), format!("no {what} value")))?;
            text.parse().map_err(|_| {
                EngineError::parse(cmd.line(), format!("{what} `{text}` is not a byte count"))
            })
        };
        Ok(SnapshotSizes {
            logical_referenced: num(0, "logicalreferenced")?,
            used: num(1, "used")?,
        })
    }

    /// `zfs get used,logicalreferenced <dataset>`: the VALUE column of lines 2 and 3.
    async fn replica_capacity(&self, dataset: &str) -> Result<ReplicaCapacity, EngineError> {
        let dataset = name_arg("dataset", dataset)?;
        let cmd = Cmd::new(ZFS).args(["get", "used,logicalreferenced", &dataset]);
        let out = self.run_ok(&cmd).await?;
        let rows: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let value = |i: usize, what: &str| -> Result<Size, EngineError> {
            let row = rows
                .get(i)
                .ok_or_else(|| EngineError::parse(cmd.line(), format!("no {what} row")))?;
            size_field(&cmd, row.split_whitespace().nth(2), what)
        };
        Ok(ReplicaCapacity {
            total: value(1, "used")?,
            used: value(2, "logicalreferenced")?,
        })
    }
}

fn snapshot_name(dataset: &str, snapshot: &str) -> Result<String, EngineError> {
    let dataset = name_arg("dataset", dataset)?;
    let snapshot = name_arg("snapshot name", snapshot)?;
    if snapshot.contains('@') || snapshot.contains('/') || dataset.contains('@') {
        return Err(EngineError::invalid(
            "snapshot name",
            format!("`{dataset}@{snapshot}` must be dataset@name with no other `@` or `/`"),
        ));
    }
    Ok(format!("{dataset}@{snapshot}"))
}
