//! Linux guest checks: bpffs, BTF, memlock, free space, /bin/bash, and the kernel release for
//! provenance.
//! `facts.sh` reports what the SSH session sees; the verdicts are pure functions of [`LinuxFacts`].

use serde::Deserialize;

use crate::session::{GuestOs, Session};

use super::{DoctorOptions, GuestCheck, GuestReport, HealthError, gib, run, scripts};

/// A memlock limit this high (KiB) is enough for ebpf-go's tests on kernels that still charge
/// BPF memory to it.
pub const MEMLOCK_ENOUGH_KIB: u64 = 64 << 10;

/// `facts.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinuxFacts {
    /// A bpf filesystem is mounted on /sys/fs/bpf.
    pub bpffs: bool,
    /// /sys/kernel/btf/vmlinux exists.
    pub btf: bool,
    /// `ulimit -l`: `unlimited` or KiB.
    pub memlock: String,
    /// `uname -r`.
    pub kernel: String,
    /// Free KiB where the tests write.
    pub free_kib: Option<u64>,
    /// Where that was measured.
    pub free_path: String,
    /// /bin/bash exists (older scripts did not say: taken as present).
    #[serde(default = "present")]
    pub bash: bool,
}

fn present() -> bool {
    true
}

pub(super) fn doctor(
    session: &mut Session,
    opts: &DoctorOptions,
) -> Result<GuestReport, HealthError> {
    let facts: LinuxFacts = run(session, scripts::LINUX_FACTS, &[])?;
    Ok(judge(&facts, opts))
}

/// The report for these facts.
pub fn judge(f: &LinuxFacts, opts: &DoctorOptions) -> GuestReport {
    let kernel = f.kernel.trim();
    let checks = vec![
        GuestCheck::ok("kernel", format!("Linux {kernel}")),
        judge_bpffs(f.bpffs),
        judge_btf(f.btf, kernel),
        judge_memlock(&f.memlock, kernel),
        judge_disk(f.free_kib, &f.free_path, opts.min_free_mib),
        judge_bash(f.bash),
    ];
    GuestReport {
        os: GuestOs::Linux,
        checks,
        guest_build: (!kernel.is_empty()).then(|| kernel.to_string()),
        stale_etw_sessions: Vec::new(),
    }
}

/// bpffs on /sys/fs/bpf (ebpf-go's pinning tests).
pub fn judge_bpffs(mounted: bool) -> GuestCheck {
    if mounted {
        return GuestCheck::ok("bpffs", "mounted on /sys/fs/bpf");
    }
    GuestCheck::fail(
        "bpffs",
        "no bpf filesystem on /sys/fs/bpf: ebpf-go's pinning tests fail",
        "mount it after every boot: add \"grep -qs ' /sys/fs/bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf\" to [vm] setup (or to the guest's init)",
    )
}

/// Kernel BTF (CO-RE and the btf package's tests).
pub fn judge_btf(present: bool, kernel: &str) -> GuestCheck {
    if present {
        return GuestCheck::ok("btf", "/sys/kernel/btf/vmlinux present");
    }
    GuestCheck::fail(
        "btf",
        format!(
            "no /sys/kernel/btf/vmlinux in kernel {kernel}: ebpf-go's CO-RE and btf tests fail"
        ),
        "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian and Ubuntu kernels are), with sysfs mounted on /sys",
    )
}

/// /bin/bash: ebpf-go's uprobe tests exec it. Only a warning: the rest of the suite runs.
pub fn judge_bash(present: bool) -> GuestCheck {
    if present {
        return GuestCheck::ok("bash", "/bin/bash present");
    }
    GuestCheck::warn(
        "bash",
        "no /bin/bash: ebpf-go's uprobe tests exec it, TestDetachLinkFail panics and the link package's remaining tests do not run",
        "put bash in the guest (Debian: apt-get install bash; an initramfs: /bin/bash and the libraries `ldd /bin/bash` lists)",
    )
}

/// (major, minor) of a kernel release such as `6.1.0-28-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// The memlock limit: unlimited or high enough, or a kernel (5.11+) that charges BPF memory to
/// the memory cgroup instead.
pub fn judge_memlock(memlock: &str, kernel: &str) -> GuestCheck {
    let m = memlock.trim();
    if m == "unlimited" {
        return GuestCheck::ok("memlock", "unlimited");
    }
    let kib: Option<u64> = m.parse().ok();
    if let Some(k) = kib.filter(|k| *k >= MEMLOCK_ENOUGH_KIB) {
        return GuestCheck::ok("memlock", format!("{k} KiB"));
    }
    if kernel_version(kernel).is_some_and(|v| v >= (5, 11)) {
        return GuestCheck::ok(
            "memlock",
            format!(
                "{m} KiB, but kernel {kernel} charges BPF memory to the memory cgroup (5.11+), not memlock"
            ),
        );
    }
    GuestCheck::fail(
        "memlock",
        format!(
            "`ulimit -l` is {m} KiB on kernel {kernel}: map creation fails with EPERM once the tests use more"
        ),
        "raise it for SSH sessions: `LimitMEMLOCK=infinity` in sshd's systemd unit, or `* - memlock unlimited` in /etc/security/limits.conf; or run the tests as root (ebpf-go removes the limit itself)",
    )
}

/// Free space where the tests write. Only a warning on Linux: minimal guests keep / in RAM.
pub fn judge_disk(free_kib: Option<u64>, path: &str, min_free_mib: u64) -> GuestCheck {
    let Some(kib) = free_kib else {
        return GuestCheck::warn(
            "disk",
            format!("cannot read free space of {path}"),
            "check `df -k /tmp` in the guest",
        );
    };
    if kib < min_free_mib << 10 {
        return GuestCheck::warn(
            "disk",
            format!(
                "{} free in {path}; the tests want at least {min_free_mib} MiB (vm.min_free_mib)",
                gib(kib << 10)
            ),
            "free space in the guest, give it more memory if / is in RAM (vm.memory_mib), or lower vm.min_free_mib",
        );
    }
    GuestCheck::ok("disk", format!("{} free in {path}", gib(kib << 10)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Status;

    fn opts() -> DoctorOptions {
        DoctorOptions {
            min_free_mib: 2048,
            efw: true,
            install_dir: String::new(),
            extensions: Vec::new(),
        }
    }

    fn healthy() -> LinuxFacts {
        LinuxFacts {
            bpffs: true,
            btf: true,
            memlock: "unlimited".into(),
            kernel: "6.1.0-28-amd64".into(),
            free_kib: Some(10 << 20),
            free_path: "/tmp".into(),
            bash: true,
        }
    }

    #[test]
    fn a_healthy_guest_passes_every_check_and_records_its_kernel() {
        let r = judge(&healthy(), &opts());
        assert!(r.checks.iter().all(|c| c.status == Status::Ok), "{r:#?}");
        assert!(!r.failed());
        assert_eq!(r.guest_build.as_deref(), Some("6.1.0-28-amd64"));
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["kernel", "bpffs", "btf", "memlock", "disk", "bash"]);
    }

    #[test]
    fn each_missing_fact_fails_with_its_fix() {
        let mut f = healthy();
        f.bpffs = false;
        f.btf = false;
        f.memlock = "64".into();
        f.kernel = "5.10.0-30-amd64".into();
        let r = judge(&f, &opts());
        let get = |n: &str| r.checks.iter().find(|c| c.name == n).unwrap();
        for name in ["bpffs", "btf", "memlock"] {
            assert_eq!(get(name).status, Status::Fail, "{name}");
        }
        assert!(
            get("bpffs")
                .fix
                .as_ref()
                .unwrap()
                .contains("mount -t bpf bpf /sys/fs/bpf")
        );
        assert!(
            get("btf")
                .fix
                .as_ref()
                .unwrap()
                .contains("CONFIG_DEBUG_INFO_BTF")
        );
        assert!(
            get("memlock")
                .fix
                .as_ref()
                .unwrap()
                .contains("LimitMEMLOCK")
        );
        assert!(r.failed());
    }

    #[test]
    fn memlock_rules() {
        assert_eq!(judge_memlock("unlimited", "4.19").status, Status::Ok);
        assert_eq!(judge_memlock("65536", "4.19.0").status, Status::Ok);
        assert_eq!(judge_memlock("8192", "4.19.0-1").status, Status::Fail);
        assert_eq!(judge_memlock("8192", "5.11.0").status, Status::Ok);
        assert_eq!(judge_memlock("8192", "6.18.44-fc").status, Status::Ok);
        assert_eq!(judge_memlock("8192", "weird").status, Status::Fail);
        assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.11rc2"), Some((5, 11)));
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn low_disk_only_warns_on_linux() {
        let c = judge_disk(Some(100 << 10), "/tmp", 2048);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("0.1 GiB free in /tmp"), "{}", c.detail);
        assert_eq!(judge_disk(Some(3 << 20), "/tmp", 2048).status, Status::Ok);
        assert_eq!(judge_disk(None, "/tmp", 2048).status, Status::Warn);
    }

    #[test]
    fn no_bash_warns_with_what_it_costs() {
        let f = LinuxFacts {
            bash: false,
            ..healthy()
        };
        let r = judge(&f, &opts());
        let b = r.checks.iter().find(|c| c.name == "bash").unwrap();
        assert_eq!(b.status, Status::Warn);
        assert!(b.detail.contains("TestDetachLinkFail"), "{b:?}");
        assert!(!r.failed());
        // Facts from an older script, without the field: taken as present.
        let old: LinuxFacts = serde_json::from_str(
            r#"{"bpffs":true,"btf":true,"memlock":"unlimited","kernel":"6.1","free_kib":1,"free_path":"/tmp"}"#,
        )
        .unwrap();
        assert!(old.bash);
    }
}
