//! Pool topology: vdev tree, vdev states and scan (resilver/scrub) progress.
//!
//! Two sources give the same typed tree:
//! - cStor's `zpool dump <pool>` JSON (uZFS extension, upstream's only source);
//! - `zpool status <pool>` text, both OpenZFS (`scan:` lines) and zfs-fuse 0.7 (`scrub:` lines),
//!   used when the zpool build has no `dump` command.

use serde_json::Value;

/// A vdev state, numbered as in `vdev_stats[1]` of `zpool dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VdevState {
    Unknown,
    Closed,
    Offline,
    Removed,
    CantOpen,
    Faulted,
    Degraded,
    Healthy,
}

impl VdevState {
    pub fn from_code(code: u64) -> Self {
        match code {
            1 => VdevState::Closed,
            2 => VdevState::Offline,
            3 => VdevState::Removed,
            4 => VdevState::CantOpen,
            5 => VdevState::Faulted,
            6 => VdevState::Degraded,
            7 => VdevState::Healthy,
            _ => VdevState::Unknown,
        }
    }

    /// A state word of `zpool status` (`ONLINE`, `UNAVAIL`, ...).
    pub fn from_status_word(word: &str) -> Self {
        match word {
            "ONLINE" | "AVAIL" | "INUSE" => VdevState::Healthy,
            "DEGRADED" => VdevState::Degraded,
            "FAULTED" => VdevState::Faulted,
            "OFFLINE" => VdevState::Offline,
            "REMOVED" => VdevState::Removed,
            "UNAVAIL" => VdevState::CantOpen,
            _ => VdevState::Unknown,
        }
    }

    /// Upstream's names (used in the `DeviceState` event "device was in <STATE> state").
    pub fn as_str(self) -> &'static str {
        match self {
            VdevState::Unknown => "UNKNOWN",
            VdevState::Closed => "CLOSED",
            VdevState::Offline => "OFFLINE",
            VdevState::Removed => "REMOVED",
            VdevState::CantOpen => "CANT_OPEN",
            VdevState::Faulted => "FAULTED",
            VdevState::Degraded => "DEGRADED",
            VdevState::Healthy => "HEALTHY",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanFunc {
    None,
    Scrub,
    Resilver,
    Other(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanState {
    None,
    Scanning,
    Finished,
    Canceled,
    Other(u64),
}

/// `scan_stats` of `zpool dump`, or the `scan:`/`scrub:` line of `zpool status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanStats {
    pub func: ScanFunc,
    pub state: ScanState,
    /// Percentage printed by `zpool status` while scanning.
    pub percent_done: Option<f64>,
}

impl ScanStats {
    fn from_codes(codes: &[u64]) -> Self {
        let func = match codes.first().copied().unwrap_or(0) {
            0 => ScanFunc::None,
            1 => ScanFunc::Scrub,
            2 => ScanFunc::Resilver,
            n => ScanFunc::Other(n),
        };
        let state = match codes.get(1).copied().unwrap_or(0) {
            0 => ScanState::None,
            1 => ScanState::Scanning,
            2 => ScanState::Finished,
            3 => ScanState::Canceled,
            n => ScanState::Other(n),
        };
        Self {
            func,
            state,
            percent_done: None,
        }
    }
}

/// One vdev of the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Vdev {
    /// `disk`, `file`, `mirror`, `raidz`, `replacing`, `spare`, `missing`, ... (zfs type names).
    pub kind: String,
    /// As shown by `zpool status` (`mirror-0`, `/dev/sdb`, `sdb`); for dump vdevs the path or
    /// the kind.
    pub name: String,
    /// Device path of a leaf; whole-disk partition suffixes already stripped.
    pub path: Option<String>,
    pub is_log: bool,
    pub whole_disk: bool,
    pub state: VdevState,
    /// Per-vdev scan statistics (dump), or the pool's resilver for leaves being resilvered
    /// (status text).
    pub scan: Option<ScanStats>,
    /// `vdev_stats[25]`, bytes processed by the current scan (dump only).
    pub scan_processed: Option<u64>,
    /// Free text after the error counters in `zpool status` (`101M resilvered`, `(resilvering)`).
    pub note: String,
    pub children: Vec<Vdev>,
}

impl Vdev {
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty() && !is_group_kind(&self.kind)
    }

    fn matches(&self, path: &str) -> bool {
        if !self.is_leaf() {
            return false;
        }
        let wanted = strip_partition_suffix(path);
        if let Some(p) = &self.path
            && (p == path || *p == wanted)
        {
            return true;
        }
        // `zpool status` shows devices under /dev by their last path component.
        let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        self.path.is_none()
            && !self.name.is_empty()
            && path.starts_with("/dev/")
            && (base(path) == self.name || base(&wanted) == self.name)
    }

    fn walk<'a>(&'a self, parents: &mut Vec<&'a Vdev>, f: &mut dyn FnMut(&'a Vdev, &[&'a Vdev])) {
        f(self, parents);
        parents.push(self);
        for c in &self.children {
            c.walk(parents, f);
        }
        parents.pop();
    }
}

fn is_group_kind(kind: &str) -> bool {
    matches!(
        kind,
        "mirror" | "raidz" | "replacing" | "spare" | "root" | "draid"
    )
}

/// Whether a replaced disk has finished resilvering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResilverProgress {
    Completed,
    InProgress,
    /// The path is not in the pool (upstream treats this as "still in progress").
    NotInPool,
}

/// The pool's vdev tree.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolTopology {
    pub state: VdevState,
    /// The pool-wide scan (root `scan_stats`, or the status `scan:`/`scrub:` line).
    pub scan: Option<ScanStats>,
    /// Top-level vdevs: data raid groups and (with `is_log`) write-cache groups.
    pub children: Vec<Vdev>,
    pub spares: Vec<Vdev>,
    pub l2cache: Vec<Vdev>,
}

impl PoolTopology {
    /// Every vdev with its ancestors (top-level vdevs, spares and l2cache, recursively).
    pub fn visit<'a>(&'a self, mut f: impl FnMut(&'a Vdev, &[&'a Vdev])) {
        let mut parents = Vec::new();
        for v in self
            .children
            .iter()
            .chain(&self.spares)
            .chain(&self.l2cache)
        {
            v.walk(&mut parents, &mut f);
        }
    }

    /// Every leaf device.
    pub fn leaves(&self) -> Vec<&Vdev> {
        let mut out = Vec::new();
        self.visit(|v, _| {
            if v.is_leaf() {
                out.push(v)
            }
        });
        out
    }

    /// The leaf using `path` (a whole-disk partition suffix on either side is ignored).
    pub fn find_leaf(&self, path: &str) -> Option<&Vdev> {
        self.leaves().into_iter().find(|v| v.matches(path))
    }

    pub fn contains_path(&self, path: &str) -> bool {
        self.find_leaf(path).is_some()
    }

    /// Upstream's resilver check for a replacement disk: missing ⇒ not in pool; no scan
    /// stats ⇒ done; nothing processed ⇒ done; resilver finished ⇒ done; else in progress.
    /// A leaf still under a `replacing`/`spare` vdev is in progress whatever its stats say.
    pub fn resilver_progress(&self, path: &str) -> ResilverProgress {
        let mut found = None;
        self.visit(|v, parents| {
            if found.is_none() && v.matches(path) {
                let replacing = parents.iter().any(|p| p.kind == "replacing");
                found = Some((v, replacing));
            }
        });
        let Some((v, replacing)) = found else {
            return ResilverProgress::NotInPool;
        };
        if replacing {
            return ResilverProgress::InProgress;
        }
        let Some(scan) = &v.scan else {
            return ResilverProgress::Completed;
        };
        if v.scan_processed == Some(0) {
            return ResilverProgress::Completed;
        }
        if scan.func == ScanFunc::Resilver && scan.state == ScanState::Finished {
            return ResilverProgress::Completed;
        }
        ResilverProgress::InProgress
    }

    /// Leaves whose state is not healthy, with their state.
    pub fn unhealthy_leaves(&self) -> Vec<(&Vdev, VdevState)> {
        self.leaves()
            .into_iter()
            .filter(|v| v.state != VdevState::Healthy)
            .map(|v| (v, v.state))
            .collect()
    }
}

/// Strips a whole-disk partition suffix: `-partN` (by-id/by-path links), `pN` after a digit
/// (`nvme0n1p1`, `mmcblk0p2`) and the partition digits of `sdX`/`hdX`/`vdX`/`xvdX`.
pub fn strip_partition_suffix(path: &str) -> String {
    if let Some(idx) = path.rfind("-part") {
        let digits = &path[idx + 5..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return path[..idx].to_string();
        }
    }
    let base_start = path.rfind('/').map_or(0, |i| i + 1);
    let base = &path[base_start..];
    let trimmed = base.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() == base.len() || trimmed.is_empty() {
        return path.to_string();
    }
    for prefix in ["xvd", "sd", "hd", "vd"] {
        if let Some(letters) = trimmed.strip_prefix(prefix)
            && !letters.is_empty()
            && letters.bytes().all(|b| b.is_ascii_lowercase())
        {
            return format!("{}{}", &path[..base_start], trimmed);
        }
    }
    if let Some(before_p) = trimmed.strip_suffix('p')
        && before_p.ends_with(|c: char| c.is_ascii_digit())
    {
        return format!("{}{}", &path[..base_start], before_p);
    }
    path.to_string()
}

/// Parses `zpool dump` JSON.
pub fn parse_dump(text: &str) -> Result<PoolTopology, String> {
    let start = text
        .find('{')
        .ok_or_else(|| "no JSON object in the output".to_string())?;
    let value: Value =
        serde_json::from_str(text[start..].trim_end()).map_err(|e| format!("invalid JSON: {e}"))?;
    let tree = value
        .get("vdev_tree")
        .ok_or_else(|| "the JSON has no `vdev_tree`".to_string())?;
    if !tree.is_object() {
        return Err("`vdev_tree` is not an object".into());
    }
    let root = dump_vdev(tree, "vdev_tree")?;
    let list = |key: &str| -> Result<Vec<Vdev>, String> {
        match tree.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| dump_vdev(v, &format!("vdev_tree.{key}[{i}]")))
                .collect(),
            Some(_) => Err(format!("`vdev_tree.{key}` is not a list")),
        }
    };
    Ok(PoolTopology {
        state: root.state,
        scan: root.scan.clone(),
        spares: list("spares")?,
        l2cache: list("l2cache")?,
        children: root.children,
    })
}

fn u64_list(v: &Value, key: &str, at: &str) -> Result<Option<Vec<u64>>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|n| {
                n.as_u64()
                    .ok_or_else(|| format!("`{at}.{key}` holds a non-integer `{n}`"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("`{at}.{key}` is not a list but `{other}`")),
    }
}

fn flag(v: &Value, key: &str) -> bool {
    match v.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
        _ => false,
    }
}

fn dump_vdev(v: &Value, at: &str) -> Result<Vdev, String> {
    if !v.is_object() {
        return Err(format!("`{at}` is not an object"));
    }
    let kind = match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => return Err(format!("`{at}.type` is not a string but `{other}`")),
    };
    let whole_disk = flag(v, "whole_disk");
    let path = match v.get("path") {
        Some(Value::String(p)) if !p.is_empty() => Some(if whole_disk {
            strip_partition_suffix(p)
        } else {
            p.clone()
        }),
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(other) => return Err(format!("`{at}.path` is not a string but `{other}`")),
    };
    let stats = u64_list(v, "vdev_stats", at)?.unwrap_or_default();
    let state = stats
        .get(1)
        .map_or(VdevState::Unknown, |c| VdevState::from_code(*c));
    let scan = u64_list(v, "scan_stats", at)?.map(|s| ScanStats::from_codes(&s));
    let children = match v.get("children") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| dump_vdev(c, &format!("{at}.children[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("`{at}.children` is not a list")),
    };
    Ok(Vdev {
        name: path.clone().unwrap_or_else(|| kind.clone()),
        kind,
        path,
        is_log: flag(v, "is_log"),
        whole_disk,
        state,
        scan,
        scan_processed: stats.get(25).copied(),
        note: String::new(),
        children,
    })
}

/// Parses the scan line(s) of `zpool status` (`scan: ...` on OpenZFS, `scrub: ...` on zfs-fuse).
pub fn parse_scan_text(text: &str) -> Option<ScanStats> {
    let t = text.to_ascii_lowercase();
    if t.trim().is_empty() || t.contains("none requested") {
        return None;
    }
    let func = if t.contains("resilver") {
        ScanFunc::Resilver
    } else if t.contains("scrub") {
        ScanFunc::Scrub
    } else {
        return None;
    };
    let state = if t.contains("in progress") {
        ScanState::Scanning
    } else if t.contains("canceled") || t.contains("stopped") {
        ScanState::Canceled
    } else if t.contains("completed")
        || t.contains("repaired")
        || t.contains("resilvered")
        || t.contains(" with ")
    {
        ScanState::Finished
    } else {
        ScanState::None
    };
    let percent_done = t.find("% done").and_then(|end| {
        let head = &t[..end];
        // The number starts after the last character that is not part of it (which may be
        // several bytes long: output is not always ASCII).
        let start = head
            .char_indices()
            .rfind(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        head[start..].parse::<f64>().ok()
    });
    Some(ScanStats {
        func,
        state,
        percent_done,
    })
}

/// Parses `zpool status <pool>` (one pool) into a topology.
pub fn parse_status(text: &str) -> Result<PoolTopology, String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = StatusHeader::parse(&lines)?;
    let pool_scan = parse_scan_text(&header.scan_text);
    let roots = parse_config(&lines[header.config_at..]);
    if roots.is_empty() {
        return Err("the `config:` section lists no vdevs".into());
    }
    let pool_state = header
        .state
        .as_deref()
        .map(|s| VdevState::from_status_word(s.split_whitespace().next().unwrap_or("")))
        .unwrap_or(roots[0].1.state);
    let mut topo = PoolTopology {
        state: pool_state,
        scan: pool_scan.clone(),
        children: Vec::new(),
        spares: Vec::new(),
        l2cache: Vec::new(),
    };
    place_roots(&mut topo, roots);
    if let Some(scan) = pool_scan.filter(|s| s.func == ScanFunc::Resilver) {
        mark_resilvering(&mut topo, &scan);
    }
    Ok(topo)
}

/// Moves the vdevs under each level-0 entry where they belong: log vdevs (marked as such) and
/// the pool root's vdevs are the data vdevs; spares and cache devices have their own lists.
fn place_roots(topo: &mut PoolTopology, roots: Vec<(String, Vdev)>) {
    for (i, (name, root)) in roots.into_iter().enumerate() {
        match (i, name.as_str()) {
            (_, "logs") => topo.children.extend(root.children.into_iter().map(|mut v| {
                mark_log(&mut v);
                v
            })),
            (_, "spares") => topo.spares.extend(root.children),
            (_, "cache") => topo.l2cache.extend(root.children),
            _ => topo.children.extend(root.children),
        }
    }
}

/// What `zpool status` says above its `config:` section.
struct StatusHeader {
    /// The `state:` value.
    state: Option<String>,
    /// The `scan:` (or `scrub:`) value, continuation lines joined.
    scan_text: String,
    /// Index of the first line after `config:`.
    config_at: usize,
}

impl StatusHeader {
    fn parse(lines: &[&str]) -> Result<Self, String> {
        let mut state = None;
        let mut scan_text = String::new();
        let mut config_at = None;
        let mut current_key = String::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            if trimmed == "config:" {
                config_at = Some(i + 1);
                break;
            }
            if let Some((key, value)) = trimmed.split_once(':')
                && !line.starts_with('\t')
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphabetic())
            {
                current_key = key.to_string();
                match key {
                    "state" => state = Some(value.trim().to_string()),
                    "scan" | "scrub" => scan_text = value.trim().to_string(),
                    _ => {}
                }
            } else if (current_key == "scan" || current_key == "scrub") && !trimmed.is_empty() {
                scan_text.push(' ');
                scan_text.push_str(trimmed);
            }
        }
        let config_at = config_at.ok_or_else(|| "no `config:` section".to_string())?;
        Ok(Self {
            state,
            scan_text,
            config_at,
        })
    }
}

/// Builds the vdev tree of the `config:` section from its indentation. Returns the level-0
/// entries (the pool root and the `logs`/`spares`/`cache` headers) by name.
fn parse_config(lines: &[&str]) -> Vec<(String, Vdev)> {
    // Stack of open vdevs by indentation level.
    let mut roots: Vec<(String, Vdev)> = Vec::new();
    let mut stack: Vec<(usize, Vdev)> = Vec::new();
    let mut seen_header = false;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            break; // `errors:` and anything after the config
        }
        if !seen_header {
            if line.split_whitespace().next() == Some("NAME") {
                seen_header = true;
            }
            continue;
        }
        let Some((level, vdev)) = parse_vdev_line(line) else {
            continue;
        };
        close_vdevs(&mut stack, &mut roots, level);
        stack.push((level, vdev));
    }
    close_vdevs(&mut stack, &mut roots, 0);
    roots
}

/// Closes the open vdevs at `level` and deeper, each into its parent (or into `roots`).
fn close_vdevs(stack: &mut Vec<(usize, Vdev)>, roots: &mut Vec<(String, Vdev)>, level: usize) {
    while let Some((l, _)) = stack.last() {
        if *l < level {
            break;
        }
        let (_, v) = stack.pop().expect("checked non-empty");
        match stack.last_mut() {
            Some((_, parent)) => parent.children.push(v),
            None => roots.push((v.name.clone(), v)),
        }
    }
}

/// One line of the `config:` section: its indentation level and the vdev it names (without
/// children). The note is what follows the state, after the three error counters.
fn parse_vdev_line(line: &str) -> Option<(usize, Vdev)> {
    let body = line.trim_start_matches('\t');
    let spaces = body.len() - body.trim_start_matches(' ').len();
    let mut fields = body.split_whitespace();
    let name = fields.next()?;
    let level = spaces / 2;
    let word = fields.next().unwrap_or("");
    let vstate = VdevState::from_status_word(word);
    let rest: Vec<&str> = fields.collect();
    let note = if rest.len() > 3 && rest[..3].iter().all(|f| f.parse::<u64>().is_ok()) {
        rest[3..].join(" ")
    } else {
        rest.join(" ")
    };
    let kind = if level == 0 {
        "root".to_string()
    } else {
        vdev_kind_from_name(name)
    };
    let path = (!is_group_kind(&kind) && name.starts_with('/')).then(|| name.to_string());
    Some((
        level,
        Vdev {
            kind,
            name: name.to_string(),
            path,
            is_log: false,
            whole_disk: false,
            state: vstate,
            scan: None,
            scan_processed: None,
            note,
            children: Vec::new(),
        },
    ))
}

fn mark_log(v: &mut Vdev) {
    v.is_log = true;
    for c in &mut v.children {
        mark_log(c);
    }
}

/// Gives the pool's resilver to the leaves it concerns: while it runs, leaves under a
/// `replacing`/`spare` vdev or marked `(resilvering)`; once finished, every leaf.
fn mark_resilvering(topo: &mut PoolTopology, scan: &ScanStats) {
    fn walk(v: &mut Vdev, in_replacing: bool, scan: &ScanStats) {
        let here = in_replacing || v.kind == "replacing" || v.kind == "spare";
        if v.is_leaf() {
            let concerned =
                scan.state != ScanState::Scanning || here || v.note.contains("resilvering");
            if concerned {
                v.scan = Some(scan.clone());
            }
        }
        for c in &mut v.children {
            walk(c, here, scan);
        }
    }
    for v in topo
        .children
        .iter_mut()
        .chain(topo.spares.iter_mut())
        .chain(topo.l2cache.iter_mut())
    {
        walk(v, false, scan);
    }
}

fn vdev_kind_from_name(name: &str) -> String {
    let stem = name
        .rsplit_once('-')
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(name, |(s, _)| s);
    match stem {
        "mirror" | "replacing" | "spare" => stem.to_string(),
        s if s.starts_with("raidz") && s[5..].bytes().all(|b| b.is_ascii_digit()) => {
            "raidz".to_string()
        }
        s if s.starts_with("draid") => "draid".to_string(),
        _ if name.starts_with("/dev/") || !name.starts_with('/') => "disk".to_string(),
        _ => "file".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_whole_disk_partition_suffixes() {
        for (input, want) in [
            ("/dev/sda1", "/dev/sda"),
            ("/dev/xvdf12", "/dev/xvdf"),
            ("/dev/vdb1", "/dev/vdb"),
            ("/dev/nvme0n1p1", "/dev/nvme0n1"),
            (
                "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part1",
                "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001",
            ),
            (
                "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:1-part9",
                "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:1",
            ),
            ("/dev/sda", "/dev/sda"),
            (
                "/var/openebs/sparse/0-ndm-sparse.img",
                "/var/openebs/sparse/0-ndm-sparse.img",
            ),
            ("/dev/loop7", "/dev/loop7"),
            ("", ""),
        ] {
            assert_eq!(strip_partition_suffix(input), want, "{input}");
        }
    }

    #[test]
    fn scan_lines_of_both_tool_generations() {
        let s = parse_scan_text(
            "resilver completed after 0h0m with 0 errors on Mon Nov 23 05:53:13 2026",
        )
        .unwrap();
        assert_eq!((s.func, s.state), (ScanFunc::Resilver, ScanState::Finished));
        let s = parse_scan_text("resilver in progress since Sun Jan  1 00:00:00 2023 1.50G scanned, 1.19G resilvered, 60.00% done, 00:00:03 to go").unwrap();
        assert_eq!(
            (s.func, s.state, s.percent_done),
            (ScanFunc::Resilver, ScanState::Scanning, Some(60.0))
        );
        let s = parse_scan_text("resilver in progress for 0h0m, 45.12% done, 0h1m to go").unwrap();
        assert_eq!(s.percent_done, Some(45.12));
        let s = parse_scan_text("resilvered 101M in 00:00:02 with 0 errors on Mon Nov 23 2026")
            .unwrap();
        assert_eq!((s.func, s.state), (ScanFunc::Resilver, ScanState::Finished));
        let s = parse_scan_text("scrub repaired 85.5M in 0h0m with 0 errors on Mon Nov 23 2026")
            .unwrap();
        assert_eq!((s.func, s.state), (ScanFunc::Scrub, ScanState::Finished));
        let s = parse_scan_text("scrub canceled on Mon Nov 23 2026").unwrap();
        assert_eq!((s.func, s.state), (ScanFunc::Scrub, ScanState::Canceled));
        assert_eq!(parse_scan_text("none requested"), None);
    }
}
