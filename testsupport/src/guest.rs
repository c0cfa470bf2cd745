//! A small Linux guest (Debian kernel + busybox + the host's OpenSSH sshd) for tests that need a
//! real VM under QEMU/TCG.
//!
//! Why built here instead of downloaded: the machine only reaches package registries, and a guest
//! assembled from Debian's packages plus the host's own sshd boots to SSH in seconds under TCG.
//! The result is cached under `<workspace>/target/harness-guest/<hash-of-inputs>/` so it is built
//! once per machine (about 10 s with a warm apt cache); concurrent test binaries serialise on a
//! lock file and the loser reuses the winner's build.
//!
//! What the guest offers (the contract other tests rely on):
//! - users `root` and `harness` (an alias of uid 0), shell `/bin/sh` (busybox: `tar`, `sh`, …);
//! - authorized keys from the kernel command line: `harness.key=<base64 of authorized_keys text>`
//!   (see [`LinuxGuest::append`]); keys baked at build time are not needed;
//! - a fixed host key per build (so pinning in known_hosts is stable across boots);
//! - sshd reads `/etc/ssh/sshd_config.d/*.conf` first: an install's `setup.sh` may write
//!   `SetEnv NAME=value` to [`SSHD_ENV_FILE`] and run [`RESTART_SSHD`] to restart sshd, after
//!   which *new* sessions see the value;
//! - bpffs on `/sys/fs/bpf` (and the Debian kernel's BTF), so `harness run`'s guest doctor passes;
//! - `/data`: the first virtio-blk disk, formatted (ext2, mounted by the ext4 driver) on first boot and mounted, so files there
//!   survive a guest reboot and belong to the qcow2 disk (overlay reset, snapshots);
//! - ACPI power button → clean poweroff (busybox acpid + init), `reboot` works;
//! - static network: 10.0.2.15/24 via 10.0.2.2 (QEMU user networking), virtio-net or e1000;
//! - the pvpanic driver (`pvpanic_mmio`): with QEMU's `-device pvpanic` a kernel panic (e.g.
//!   `echo c > /proc/sysrq-trigger`) is reported as QMP `GUEST_PANICKED`; `panic=-1` on the
//!   command line reboots the guest at once afterwards;
//! - `harness.nosshd=1` on the command line boots everything but sshd (readiness-failure tests);
//! - `harness.noacpi=1` ignores the ACPI power button, like minimal initramfs guests;
//! - the serial console prints `harness-guest: sshd started` once sshd listens.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Bumped whenever the layout or the scripts below change in a way the hash would not see.
const BUILDER_VERSION: &str = "harness-guest-7";

/// File an install step may write `SetEnv NAME=value` lines to (read by sshd at start).
pub const SSHD_ENV_FILE: &str = "/etc/ssh/sshd_config.d/harness-env.conf";
/// Command in the guest that restarts sshd (stop, wait, start; bounded).
pub const RESTART_SSHD: &str = "/usr/sbin/restart-sshd";
/// Mount point of the persistent disk.
pub const DATA_DIR: &str = "/data";
/// Line the guest prints on its serial console when sshd is up.
pub const READY_MARKER: &str = "harness-guest: sshd started";

/// Kernel modules the guest loads at boot, in order (their dependencies are added first).
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "e1000",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "button",
    "evdev",
    // QEMU's pvpanic device (ACPI QEMU0001): a kernel panic becomes QMP GUEST_PANICKED.
    "pvpanic_mmio",
];

/// A built guest: a kernel and an initramfs ready for `-kernel`/`-initrd`.
#[derive(Debug, Clone)]
pub struct LinuxGuest {
    /// `vmlinuz` of Debian's current kernel package.
    pub kernel: PathBuf,
    /// gzip'd newc cpio with busybox, sshd and the modules.
    pub initrd: PathBuf,
    /// `uname -r` of the kernel.
    pub kernel_version: String,
    /// The cache directory holding both.
    pub dir: PathBuf,
}

impl LinuxGuest {
    /// Kernel command line that authorizes `authorized_keys` (one or more public key lines).
    pub fn append(&self, authorized_keys: &str) -> String {
        append_for_key(authorized_keys)
    }
}

/// Kernel command line for the guest with the given authorized keys (see [`LinuxGuest::append`]).
pub fn append_for_key(authorized_keys: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(authorized_keys.trim().as_bytes());
    format!("console=ttyS0 quiet panic=-1 harness.key={b64}")
}

/// Why the guest could not be built or booted.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("building the test guest: {step} failed: {detail}")]
    Build { step: String, detail: String },
    #[error("booting the test guest: {0}")]
    Boot(String),
    #[error("test guest I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GuestError + '_ {
    move |source| GuestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn build_err(step: &str, detail: impl std::fmt::Display) -> GuestError {
    GuestError::Build {
        step: step.to_string(),
        detail: detail.to_string(),
    }
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("testsupport lives in the workspace")
            .join("target"),
    }
}

/// The guest, built on first use in this process (and on this machine), then reused.
///
/// Panics with the build error: it is a test fixture, and a test cannot continue without it.
pub fn linux_guest() -> &'static LinuxGuest {
    static GUEST: OnceLock<Result<LinuxGuest, String>> = OnceLock::new();
    match GUEST.get_or_init(|| {
        build_cached(&target_dir().join("harness-guest")).map_err(|e| e.to_string())
    }) {
        Ok(g) => g,
        Err(e) => panic!(
            "{e}\n(the test guest needs apt-get, dpkg-deb, cpio, gzip, ssh-keygen and the host's sshd; see .ci/install-deps)"
        ),
    }
}

/// Run a host command, returning stdout; the error names the command and its stderr.
fn run(step: &str, cmd: &mut Command) -> Result<String, GuestError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| build_err(step, format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(build_err(
            step,
            format!(
                "{:?} exited with {}: {}",
                cmd.get_program(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Name of the kernel package `linux-image-amd64` depends on, from `apt-cache depends` output.
fn parse_kernel_dep(depends: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("Depends: ")
            .filter(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
            .map(str::to_string)
    })
}

/// Candidate version from `apt-cache policy` output.
fn parse_candidate(policy: &str) -> Option<String> {
    policy.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Candidate: ")
            .filter(|v| *v != "(none)")
            .map(str::to_string)
    })
}

/// Library paths from `ldd` output (both `name => path (addr)` and `/path (addr)` forms).
fn parse_ldd(ldd: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for l in ldd.lines() {
        let l = l.trim();
        let candidate = match l.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => l,
        };
        if let Some(p) = candidate.split_whitespace().next()
            && p.starts_with('/')
        {
            libs.push(PathBuf::from(p));
        }
    }
    libs
}

/// The `depends=` field of a kernel module's `.modinfo` section (comma separated names).
fn module_depends(ko: &[u8]) -> Vec<String> {
    let needle = b"\0depends=";
    let Some(pos) = ko.windows(needle.len()).position(|w| w == needle) else {
        return Vec::new();
    };
    let rest = &ko[pos + needle.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// Load order for `wanted` given each module's dependencies (dependencies first, no repeats).
fn load_order(
    wanted: &[&str],
    deps: &dyn Fn(&str) -> Result<Vec<String>, GuestError>,
) -> Result<Vec<String>, GuestError> {
    fn visit(
        m: &str,
        deps: &dyn Fn(&str) -> Result<Vec<String>, GuestError>,
        seen: &mut Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<(), GuestError> {
        if seen.iter().any(|s| s == m) {
            return Ok(());
        }
        if stack.iter().any(|s| s == m) || stack.len() > 64 {
            return Err(build_err(
                "resolving module dependencies",
                format!("cycle at {m}"),
            ));
        }
        stack.push(m.to_string());
        for d in deps(m)? {
            visit(&d, deps, seen, stack)?;
        }
        stack.pop();
        seen.push(m.to_string());
        Ok(())
    }
    let mut seen = Vec::new();
    for m in wanted {
        visit(m, deps, &mut seen, &mut Vec::new())?;
    }
    Ok(seen)
}

struct Inputs {
    kernel_pkg: String,
    kernel_ver: String,
    busybox_ver: String,
    host_files: Vec<PathBuf>,
    hash: String,
}

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

fn gather_inputs() -> Result<Inputs, GuestError> {
    let deps = run(
        "finding the kernel package",
        Command::new("apt-cache").args(["depends", "linux-image-amd64"]),
    )?;
    let kernel_pkg = parse_kernel_dep(&deps).ok_or_else(|| {
        build_err(
            "finding the kernel package",
            "linux-image-amd64 has no linux-image-* dependency",
        )
    })?;
    let policy = run(
        "finding package versions",
        Command::new("apt-cache").args(["policy", &kernel_pkg, "busybox-static"]),
    )?;
    // `apt-cache policy a b` prints two blocks in order.
    let mut blocks = policy.split("\n").fold(Vec::<String>::new(), |mut acc, l| {
        if !l.starts_with(' ') && l.ends_with(':') {
            acc.push(String::new());
        }
        if let Some(last) = acc.last_mut() {
            last.push_str(l);
            last.push('\n');
        }
        acc
    });
    if blocks.len() != 2 {
        return Err(build_err(
            "finding package versions",
            format!("unexpected apt-cache policy output: {policy}"),
        ));
    }
    let busybox_ver = parse_candidate(&blocks.pop().unwrap_or_default()).ok_or_else(|| {
        build_err(
            "finding package versions",
            "busybox-static has no candidate (apt-get update?)",
        )
    })?;
    let kernel_ver = parse_candidate(&blocks.pop().unwrap_or_default()).ok_or_else(|| {
        build_err(
            "finding package versions",
            format!("{kernel_pkg} has no candidate"),
        )
    })?;
    let mut host_files = vec![PathBuf::from(SSHD), PathBuf::from(SFTP_SERVER)];
    for bin in [SSHD, SFTP_SERVER] {
        let ldd = run("listing sshd's libraries", Command::new("ldd").arg(bin))?;
        for lib in parse_ldd(&ldd) {
            if !host_files.contains(&lib) {
                host_files.push(lib);
            }
        }
    }
    let mut h = Sha256::new();
    for part in [
        BUILDER_VERSION,
        &kernel_pkg,
        &kernel_ver,
        &busybox_ver,
        RC_BOOT,
        RC_SHUTDOWN,
        SSHD_CONFIG,
        RESTART_SCRIPT,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for m in MODULES {
        h.update(m.as_bytes());
    }
    for f in &host_files {
        let bytes = fs::read(f).map_err(io_err(f))?;
        h.update(f.as_os_str().as_encoded_bytes());
        h.update(Sha256::digest(&bytes));
    }
    let hash = base16ct::lower::encode_string(&h.finalize())[..16].to_string();
    Ok(Inputs {
        kernel_pkg,
        kernel_ver,
        busybox_ver,
        host_files,
        hash,
    })
}

/// Build (or reuse) the guest under `cache_root/<hash>/`.
pub fn build_cached(cache_root: &Path) -> Result<LinuxGuest, GuestError> {
    let inputs = gather_inputs()?;
    let dir = cache_root.join(&inputs.hash);
    let done = |dir: &Path| -> Option<LinuxGuest> {
        let version = fs::read_to_string(dir.join("kernel-version")).ok()?;
        let g = LinuxGuest {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.gz"),
            kernel_version: version.trim().to_string(),
            dir: dir.to_path_buf(),
        };
        (g.kernel.is_file() && g.initrd.is_file()).then_some(g)
    };
    if let Some(g) = done(&dir) {
        return Ok(g);
    }
    fs::create_dir_all(cache_root).map_err(io_err(cache_root))?;
    let lock_path = cache_root.join("build.lock");
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    if let Some(g) = done(&dir) {
        return Ok(g);
    }
    let started = Instant::now();
    let work = cache_root.join(format!("build-{}-{}", inputs.hash, std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(io_err(&work))?;
    let result = build_into(&inputs, &work);
    let out = work.join("out");
    let outcome = result.and_then(|()| {
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&out, &dir).map_err(io_err(&dir))
    });
    let _ = fs::remove_dir_all(&work);
    outcome?;
    // Older builds (other input hashes) are dead weight: drop them.
    if let Ok(entries) = fs::read_dir(cache_root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name != inputs.hash
                && name.len() == 16
                && name.bytes().all(|b| b.is_ascii_hexdigit())
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    eprintln!(
        "testsupport: built the Linux test guest ({} {}) in {:.1?} at {}",
        inputs.kernel_pkg,
        inputs.kernel_ver,
        started.elapsed(),
        dir.display()
    );
    done(&dir).ok_or_else(|| {
        build_err(
            "checking the built guest",
            "kernel or initrd missing after build",
        )
    })
}

fn build_into(inputs: &Inputs, work: &Path) -> Result<(), GuestError> {
    let debs = work.join("debs");
    fs::create_dir_all(&debs).map_err(io_err(&debs))?;
    run(
        "apt-get download",
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-q"])
            .arg(format!("{}={}", inputs.kernel_pkg, inputs.kernel_ver))
            .arg(format!("busybox-static={}", inputs.busybox_ver)),
    )?;
    let mut kernel_deb = None;
    let mut busybox_deb = None;
    for e in fs::read_dir(&debs).map_err(io_err(&debs))? {
        let p = e.map_err(io_err(&debs))?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with("busybox-static_") {
            busybox_deb = Some(p);
        } else if name.starts_with("linux-image-") {
            kernel_deb = Some(p);
        }
    }
    let (Some(kernel_deb), Some(busybox_deb)) = (kernel_deb, busybox_deb) else {
        return Err(build_err(
            "apt-get download",
            "the .deb files are not where apt-get put them",
        ));
    };
    let kroot = work.join("kernel");
    let broot = work.join("busybox");
    for (deb, root) in [(&kernel_deb, &kroot), (&busybox_deb, &broot)] {
        fs::create_dir_all(root).map_err(io_err(root))?;
        run(
            "dpkg-deb -x",
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(root),
        )?;
    }
    // Kernel and version.
    let boot = kroot.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(io_err(&boot))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| build_err("unpacking the kernel", "no boot/vmlinuz-* in the package"))?;
    let version =
        vmlinuz.file_name().unwrap_or_default().to_string_lossy()["vmlinuz-".len()..].to_string();
    let mods_root = kroot.join("lib/modules").join(&version);

    // Index every module by name.
    let mut index = std::collections::HashMap::new();
    let mut stack = vec![mods_root.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let p = e.map_err(io_err(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                index.insert(n.replace('-', "_"), p);
            }
        }
    }
    let deps = |m: &str| -> Result<Vec<String>, GuestError> {
        let p = index.get(m).ok_or_else(|| {
            build_err(
                "resolving module dependencies",
                format!("module {m} not in {version}"),
            )
        })?;
        Ok(module_depends(&fs::read(p).map_err(io_err(p))?))
    };
    let order = load_order(MODULES, &deps)?;

    // The initramfs tree.
    let root = work.join("root");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/lib/openssh",
        "lib/x86_64-linux-gnu",
        "lib64",
        "etc/ssh/sshd_config.d",
        "etc/acpi/PWRF",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root/.ssh",
        "data",
        "var/log",
        "var/empty",
        "lib/modules",
    ] {
        fs::create_dir_all(root.join(d)).map_err(io_err(&root.join(d)))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(io_err(&root))?;
    let busybox = root.join("bin/busybox");
    copy(&broot.join("bin/busybox"), &busybox, 0o755)?;
    let applets = run(
        "listing busybox applets",
        Command::new(&busybox).arg("--list-full"),
    )?;
    for a in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = root.join(a);
        if link.exists() || a == "bin/busybox" {
            continue;
        }
        let depth = a.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        symlink(&target, &link).map_err(io_err(&link))?;
    }
    symlink("bin/busybox", root.join("init")).map_err(io_err(&root))?;
    // sshd, sftp-server and their libraries at the same paths as on the host.
    for f in &inputs.host_files {
        let rel = f.strip_prefix("/").unwrap_or(f);
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        copy(f, &dest, 0o755)?;
    }
    // Modules, flat, with the load list.
    let mut load_list = String::new();
    for m in &order {
        let src = &index[m.as_str()];
        copy(
            src,
            &root.join("lib/modules").join(format!("{m}.ko")),
            0o644,
        )?;
        let _ = writeln!(load_list, "{m}");
    }
    write(&root.join("etc/modules.load"), &load_list, 0o644)?;
    // Config and scripts.
    write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nharness:x:0:0:harness:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n",
        0o644,
    )?;
    write(
        &root.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\nharness:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n",
        0o600,
    )?;
    write(
        &root.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\n",
        0o644,
    )?;
    write(&root.join("etc/hostname"), "harness-guest\n", 0o644)?;
    write(&root.join("etc/inittab"), INITTAB, 0o644)?;
    write(&root.join("etc/rc.boot"), RC_BOOT, 0o755)?;
    write(&root.join("etc/rc.shutdown"), RC_SHUTDOWN, 0o755)?;
    write(
        &root.join("etc/acpi/PWRF/00000080"),
        "#!/bin/sh\nexec /sbin/poweroff\n",
        0o755,
    )?;
    write(&root.join("etc/ssh/sshd_config"), SSHD_CONFIG, 0o644)?;
    write(
        &root.join(SSHD_ENV_FILE.trim_start_matches('/')),
        "# SetEnv NAME=value lines go here\n",
        0o644,
    )?;
    write(
        &root.join(RESTART_SSHD.trim_start_matches('/')),
        RESTART_SCRIPT,
        0o755,
    )?;
    write(
        &root.join("etc/kernel-version"),
        &format!("{version}\n"),
        0o644,
    )?;
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    run(
        "generating the guest host key",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "harness-guest", "-f"])
            .arg(&key),
    )?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).map_err(io_err(&key))?;

    // Pack.
    let out = work.join("out");
    fs::create_dir_all(&out).map_err(io_err(&out))?;
    copy(&vmlinuz, &out.join("vmlinuz"), 0o644)?;
    let initrd = out.join("initrd.gz");
    run(
        "packing the initramfs",
        Command::new("bash")
            .current_dir(&root)
            .arg("-c")
            .arg("set -o pipefail; find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 > \"$1\"")
            .arg("sh")
            .arg(&initrd),
    )?;
    write(&out.join("kernel-version"), &format!("{version}\n"), 0o644)?;
    fs::copy(key.with_extension("pub"), out.join("host_key.pub")).map_err(io_err(&key))?;
    Ok(())
}

fn copy(src: &Path, dest: &Path, mode: u32) -> Result<(), GuestError> {
    fs::copy(src, dest).map_err(io_err(src))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_err(dest))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), GuestError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::write(path, text).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

const INITTAB: &str = "::sysinit:/etc/rc.boot
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/rc.shutdown
";

const RC_BOOT: &str = r#"#!/bin/sh
# harness test guest: bring up devices, network, /data and sshd. Every wait is bounded.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
hostname -F /etc/hostname
while read -r m; do insmod "/lib/modules/$m.ko" 2>/dev/null; done < /etc/modules.load
nosshd=0
noacpi=0
: > /etc/ssh/authorized_keys
for w in $(cat /proc/cmdline); do
  case "$w" in
    harness.key=*) echo "${w#harness.key=}" | base64 -d >> /etc/ssh/authorized_keys; echo >> /etc/ssh/authorized_keys ;;
    harness.nosshd=1) nosshd=1 ;;
    harness.noacpi=1) noacpi=1 ;;
  esac
done
chmod 600 /etc/ssh/authorized_keys
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
else
  echo "harness-guest: no eth0 after 10 s" > /dev/console
fi
i=0
while [ ! -b /dev/vda ] && [ $i -lt 40 ] && grep -qx 0x0002 /sys/bus/virtio/devices/*/device 2>/dev/null; do sleep 0.05; i=$((i+1)); done
if [ -b /dev/vda ]; then
  if ! mount -t ext4 /dev/vda /data 2>/dev/null; then
    mke2fs -F /dev/vda >/dev/null 2>&1 && mount -t ext4 /dev/vda /data
  fi
  if grep -q ' /data ' /proc/mounts; then echo "harness-guest: /data mounted" > /dev/console; fi
fi
[ "$noacpi" = 1 ] || acpid -c /etc/acpi -l /run/acpid.log
if [ "$nosshd" = 1 ]; then
  echo "harness-guest: sshd disabled by harness.nosshd=1" > /dev/console
else
  mkdir -p /run/sshd && chmod 755 /run/sshd
  /usr/sbin/sshd -E /run/sshd.log && echo "harness-guest: sshd started" > /dev/console
fi
"#;

const RC_SHUTDOWN: &str = r#"#!/bin/sh
[ -f /run/sshd.pid ] && kill "$(cat /run/sshd.pid)" 2>/dev/null
sync
grep -q ' /data ' /proc/mounts && umount /data
echo "harness-guest: shutting down" > /dev/console
"#;

const RESTART_SCRIPT: &str = r#"#!/bin/sh
# Restart the listening sshd (sessions already open stay up); new sessions see sshd_config.d changes.
pid=$(cat /run/sshd.pid 2>/dev/null)
if [ -n "$pid" ]; then
  kill "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
mkdir -p /run/sshd
exec /usr/sbin/sshd -E /run/sshd.log
"#;

const SSHD_CONFIG: &str = "Include /etc/ssh/sshd_config.d/*.conf
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /etc/ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 50
";

/// An ed25519 key pair for tests, generated once per process in a temporary directory.
#[derive(Debug)]
pub struct TestKey {
    /// Private key file (mode 0600).
    pub private: PathBuf,
    /// The public key line.
    pub public: String,
    _dir: tempfile::TempDir,
}

/// The process-wide test key pair.
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir for the test key");
        let private = dir.path().join("id_ed25519");
        run(
            "generating a test key",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "harness-test", "-f"])
                .arg(&private),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let public =
            fs::read_to_string(private.with_extension("pub")).expect("reading the test public key");
        TestKey {
            private,
            public: public.trim().to_string(),
            _dir: dir,
        }
    })
}

/// A free TCP port on 127.0.0.1 (racy by nature; QEMU fails loudly if it was taken).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// How [`RunningGuest::boot`] starts the guest.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    /// Extra words for the kernel command line (e.g. `harness.nosshd=1`).
    pub extra_append: String,
    /// A qcow2 disk for `/data`; a fresh 256 MiB one in the guest's temp dir when `None`.
    pub data_disk: Option<PathBuf>,
    /// Seconds from QEMU start until sshd must answer.
    pub timeout: Duration,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            memory_mib: 512,
            cpus: 2,
            extra_append: String::new(),
            data_disk: None,
            timeout: Duration::from_secs(180),
        }
    }
}

/// A guest booted directly with QEMU/TCG (for tests outside `provision::vm`): killed on drop.
#[derive(Debug)]
pub struct RunningGuest {
    child: Child,
    /// Loopback port forwarded to the guest's port 22.
    pub port: u16,
    /// The serial console log.
    pub serial_log: PathBuf,
    /// Time from QEMU start to the SSH banner.
    pub boot_time: Duration,
    dir: tempfile::TempDir,
}

impl RunningGuest {
    /// Boot the guest with [`test_key`] authorized and wait (bounded) for sshd's banner.
    pub fn boot(opts: &BootOptions) -> Result<RunningGuest, GuestError> {
        let guest = linux_guest();
        let dir = tempfile::tempdir().map_err(io_err(Path::new("tmp")))?;
        let disk = match &opts.data_disk {
            Some(d) => d.clone(),
            None => {
                let d = dir.path().join("data.qcow2");
                run(
                    "creating the data disk",
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2"])
                        .arg(&d)
                        .arg("256M"),
                )
                .map_err(|e| GuestError::Boot(e.to_string()))?;
                d
            }
        };
        let port = free_port();
        let serial_log = dir.path().join("serial.log");
        let append = format!("{} {}", guest.append(&test_key().public), opts.extra_append);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            // As harness's own TCG guests: `max` has RDRAND, so the kernel's entropy pool is
            // ready at once. The default model has none; sshd's getrandom() then waits on jitter
            // entropy, which after a reboot under TCG was seen to spin (soft lockup) for minutes.
            "-cpu",
            "max",
            "-nodefaults",
            "-display",
            "none",
            "-no-user-config",
        ])
        .args([
            "-m",
            &opts.memory_mib.to_string(),
            "-smp",
            &opts.cpus.to_string(),
        ])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .args(["-append", append.trim()])
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| GuestError::Boot(format!("cannot start qemu-system-x86_64: {e}")))?;
        let mut g = RunningGuest {
            child,
            port,
            serial_log,
            boot_time: Duration::ZERO,
            dir,
        };
        loop {
            if let Ok(Some(status)) = g.child.try_wait() {
                let mut err = String::new();
                if let Some(mut s) = g.child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                return Err(GuestError::Boot(format!(
                    "qemu exited with {status}: {}",
                    err.trim()
                )));
            }
            if ssh_banner("127.0.0.1", port, Duration::from_secs(2)).is_some() {
                g.boot_time = started.elapsed();
                return Ok(g);
            }
            if started.elapsed() > opts.timeout {
                return Err(GuestError::Boot(format!(
                    "no SSH banner on 127.0.0.1:{port} after {:?}; serial log tail:\n{}",
                    opts.timeout,
                    tail(&g.serial_log, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A system `ssh` command to the guest as root with the test key (host key not checked).
    pub fn ssh(&self, remote_command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(ssh_args(self.port, &test_key().private))
            .arg(remote_command);
        c
    }

    /// Directory that lives as long as the guest (serial log, default data disk).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        // QEMU runs in its own process group: kill the group, then reap.
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments for the system `ssh` client to reach a guest on loopback with a test key.
pub fn ssh_args(port: u16, identity: &Path) -> Vec<String> {
    [
        "-p",
        &port.to_string(),
        "-i",
        &identity.display().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "IdentitiesOnly=yes",
        "root@127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The SSH identification line if something on `host:port` sends one within `timeout`.
pub fn ssh_banner(host: &str, port: u16, timeout: Duration) -> Option<String> {
    let addr = format!("{host}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !got.contains(&b'\n') && got.len() < 255 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(b"");
    let line = String::from_utf8_lossy(&got).lines().next()?.to_string();
    line.starts_with("SSH-2.0-").then_some(line)
}

/// The last `n` lines of a file (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency_is_read_from_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            parse_kernel_dep(out).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_kernel_dep("linux-image-amd64\n"), None);
        assert_eq!(
            parse_kernel_dep("x\n  Depends: <linux-image-virtual>\n"),
            None
        );
    }

    #[test]
    fn candidate_version_is_read_from_apt_cache_policy() {
        assert_eq!(
            parse_candidate("busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4\n")
                .as_deref(),
            Some("1:1.35.0-4")
        );
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn ldd_output_gives_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn modinfo_depends_is_parsed() {
        let ko =
            b"\x7fELF....\0license=GPL\0depends=virtio,virtio_ring,net-failover\0vermagic=6.1\0";
        assert_eq!(
            module_depends(ko),
            vec!["virtio", "virtio_ring", "net_failover"]
        );
        assert!(module_depends(b"\0depends=\0").is_empty());
        assert!(module_depends(b"nothing").is_empty());
    }

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let deps = |m: &str| -> Result<Vec<String>, GuestError> {
            Ok(match m {
                "virtio_net" => vec!["virtio".into(), "net_failover".into()],
                "net_failover" => vec!["failover".into()],
                "virtio_blk" => vec!["virtio".into()],
                _ => vec![],
            })
        };
        assert_eq!(
            load_order(&["virtio_net", "virtio_blk"], &deps).unwrap(),
            vec![
                "virtio",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_blk"
            ]
        );
        let cyclic = |m: &str| -> Result<Vec<String>, GuestError> {
            Ok(vec![if m == "a" { "b" } else { "a" }.into()])
        };
        assert!(load_order(&["a"], &cyclic).is_err());
    }

    #[test]
    fn append_carries_the_key_in_base64_without_spaces() {
        let a = append_for_key("ssh-ed25519 AAAA test@host\n");
        let word = a
            .split(' ')
            .find(|w| w.starts_with("harness.key="))
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&word["harness.key=".len()..])
            .unwrap();
        assert_eq!(decoded, b"ssh-ed25519 AAAA test@host");
        assert!(a.contains("console=ttyS0"));
    }
}
