//! Reads and writes through an iSCSI target with libiscsi (Debian's `libiscsi7`, loaded at run
//! time so that building needs no headers), from inside a network namespace. Each call is one
//! short session (login, I/O, logout): the engine's istgt has crashed on libiscsi NOP-Outs of
//! long sessions.

use std::{
    ffi::{CStr, CString, c_char, c_int, c_void},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::netns::in_netns;

/// Bytes of one logical block of the cStor LUN.
pub const BLOCK: usize = 512;

type CreateContext = unsafe extern "C" fn(*const c_char) -> *mut c_void;
type SetStr = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type SetInt = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type Connect = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> c_int;
type Ctx = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetError = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeTask = unsafe extern "C" fn(*mut c_void);
#[repr(C)]
struct ScsiIovec {
    base: *mut c_void,
    len: usize,
}
type Write10Iov = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    u32,
    *mut u8,
    u32,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *mut ScsiIovec,
    c_int,
) -> *mut c_void;
type Read10Iov = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    u32,
    u32,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *mut ScsiIovec,
    c_int,
) -> *mut c_void;

struct Lib {
    create: CreateContext,
    set_target: SetStr,
    set_session_type: SetInt,
    set_header_digest: SetInt,
    connect: Connect,
    logout: Ctx,
    destroy: Ctx,
    error: GetError,
    free_task: FreeTask,
    write10: Write10Iov,
    read10: Read10Iov,
}

fn load() -> anyhow::Result<Lib> {
    // SAFETY: dlopen/dlsym of a system library; the symbol types are libiscsi 1.19's.
    unsafe {
        let h = libc::dlopen(c"libiscsi.so.7".as_ptr(), libc::RTLD_NOW);
        if h.is_null() {
            bail!("libiscsi.so.7 not found: apt-get install libiscsi-bin (it brings libiscsi7)");
        }
        let sym = |name: &CStr| -> anyhow::Result<*mut c_void> {
            let p = libc::dlsym(h, name.as_ptr());
            if p.is_null() {
                bail!("libiscsi has no {}", name.to_string_lossy());
            }
            Ok(p)
        };
        Ok(Lib {
            create: std::mem::transmute::<*mut c_void, CreateContext>(sym(
                c"iscsi_create_context",
            )?),
            set_target: std::mem::transmute::<*mut c_void, SetStr>(sym(c"iscsi_set_targetname")?),
            set_session_type: std::mem::transmute::<*mut c_void, SetInt>(sym(
                c"iscsi_set_session_type",
            )?),
            set_header_digest: std::mem::transmute::<*mut c_void, SetInt>(sym(
                c"iscsi_set_header_digest",
            )?),
            connect: std::mem::transmute::<*mut c_void, Connect>(sym(c"iscsi_full_connect_sync")?),
            logout: std::mem::transmute::<*mut c_void, Ctx>(sym(c"iscsi_logout_sync")?),
            destroy: std::mem::transmute::<*mut c_void, Ctx>(sym(c"iscsi_destroy_context")?),
            error: std::mem::transmute::<*mut c_void, GetError>(sym(c"iscsi_get_error")?),
            free_task: std::mem::transmute::<*mut c_void, FreeTask>(sym(c"scsi_free_scsi_task")?),
            write10: std::mem::transmute::<*mut c_void, Write10Iov>(sym(
                c"iscsi_write10_iov_sync",
            )?),
            read10: std::mem::transmute::<*mut c_void, Read10Iov>(sym(c"iscsi_read10_iov_sync")?),
        })
    }
}

/// One session to `portal` (`ip:port`), target `iqn`, LUN 0.
struct Session {
    lib: Lib,
    ctx: *mut c_void,
}

impl Session {
    fn open(portal: &str, iqn: &str) -> anyhow::Result<Session> {
        let lib = load()?;
        let initiator = CString::new("iqn.2026-12.io.cstor-rs:local-initiator")?;
        let target = CString::new(iqn)?;
        let portal_c = CString::new(portal)?;
        // SAFETY: calls into libiscsi with valid C strings; the context is destroyed in Drop.
        unsafe {
            let ctx = (lib.create)(initiator.as_ptr());
            if ctx.is_null() {
                bail!("iscsi_create_context failed");
            }
            let s = Session { lib, ctx };
            (s.lib.set_target)(ctx, target.as_ptr());
            (s.lib.set_session_type)(ctx, 2);
            (s.lib.set_header_digest)(ctx, 0);
            if (s.lib.connect)(ctx, portal_c.as_ptr(), 0) != 0 {
                bail!("iSCSI login to {iqn} at {portal}: {}", s.error());
            }
            Ok(s)
        }
    }

    fn error(&self) -> String {
        // SAFETY: libiscsi returns a NUL-terminated string owned by the context.
        unsafe {
            let p = (self.lib.error)(self.ctx);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }

    fn finish(&self, task: *mut c_void, what: &str) -> anyhow::Result<()> {
        if task.is_null() {
            bail!("{what}: {}", self.error());
        }
        // SAFETY: `status` is the first field of libiscsi's struct scsi_task.
        let status = unsafe { *(task as *const c_int) };
        unsafe { (self.lib.free_task)(task) };
        if status != 0 {
            bail!("{what}: SCSI status {status:#x}: {}", self.error());
        }
        Ok(())
    }

    fn write(&self, lba: u32, data: &mut [u8]) -> anyhow::Result<()> {
        let len = u32::try_from(data.len())?;
        let mut iov = ScsiIovec {
            base: data.as_mut_ptr().cast(),
            len: data.len(),
        };
        // SAFETY: the iovec covers `data`, which outlives the synchronous call.
        let task = unsafe {
            (self.lib.write10)(
                self.ctx,
                0,
                lba,
                std::ptr::null_mut(),
                len,
                BLOCK as c_int,
                0,
                0,
                0,
                0,
                0,
                &mut iov,
                1,
            )
        };
        self.finish(task, "WRITE(10)")
    }

    fn read(&self, lba: u32, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut iov = ScsiIovec {
            base: buf.as_mut_ptr().cast(),
            len,
        };
        // SAFETY: the iovec covers `buf`, which outlives the synchronous call.
        let task = unsafe {
            (self.lib.read10)(
                self.ctx,
                0,
                lba,
                u32::try_from(len)?,
                BLOCK as c_int,
                0,
                0,
                0,
                0,
                0,
                &mut iov,
                1,
            )
        };
        self.finish(task, "READ(10)")?;
        Ok(buf)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the context came from iscsi_create_context and is not used afterwards.
        unsafe {
            (self.lib.logout)(self.ctx);
            (self.lib.destroy)(self.ctx);
        }
    }
}

/// The cStor IQN of a volume.
/// `Ok` when libiscsi can be loaded (the initiator works here).
pub fn available() -> anyhow::Result<()> {
    load().map(drop)
}

pub fn iqn(volume: &str) -> String {
    format!("iqn.2016-09.com.openebs.cstor:{volume}")
}

/// Writes `data` (a whole number of blocks) at block `lba`, from network namespace `netns`.
pub fn write(netns: &str, portal: &str, iqn: &str, lba: u32, data: Vec<u8>) -> anyhow::Result<()> {
    anyhow::ensure!(
        data.len().is_multiple_of(BLOCK),
        "write of {} bytes: not whole {BLOCK}-byte blocks",
        data.len()
    );
    let (portal, iqn) = (portal.to_string(), iqn.to_string());
    in_netns(netns, move || {
        let mut data = data;
        Session::open(&portal, &iqn)
            .and_then(|s| s.write(lba, &mut data))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    })
}

/// Reads `len` bytes (whole blocks) at block `lba`, from network namespace `netns`.
pub fn read(netns: &str, portal: &str, iqn: &str, lba: u32, len: usize) -> anyhow::Result<Vec<u8>> {
    let (portal, iqn) = (portal.to_string(), iqn.to_string());
    in_netns(netns, move || {
        Session::open(&portal, &iqn)
            .and_then(|s| s.read(lba, len))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    })
}

/// The LUN's size in bytes (`iscsi-readcapacity16`), from network namespace `netns`.
pub fn capacity(netns: &str, portal: &str, iqn: &str) -> anyhow::Result<u64> {
    let url = format!("iscsi://{portal}/{iqn}/0");
    let out = Command::new("timeout")
        .args([
            "30",
            "ip",
            "netns",
            "exec",
            netns,
            "iscsi-readcapacity16",
            &url,
        ])
        .output()
        .context("running iscsi-readcapacity16 (apt-get install libiscsi-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Total size:")
                .map(|v| v.trim().parse::<u64>())
        })
        .with_context(|| {
            format!(
                "iscsi-readcapacity16 {url}: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })?
        .context("parsing Total size")
}

/// A recognisable pattern of `blocks` blocks: each block starts with its tag and number.
pub fn pattern(tag: &str, blocks: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks * BLOCK);
    for b in 0..blocks {
        let mut block = format!("{tag} block {b} ").into_bytes();
        while block.len() < BLOCK {
            block.push(b'a' + ((block.len() + b) % 26) as u8);
        }
        block.truncate(BLOCK);
        out.extend(block);
    }
    out
}
