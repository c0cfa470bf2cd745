//! How many VMs this host can hold at once (`harness run --vms N`).
//!
//! The rule, pure and injectable ([`max_vms`]): N VMs fit when
//! `N × memory_mib + HOST_RESERVE_MIB ≤ MemAvailable` and
//! `N × cpus ≤ CPU_OVERCOMMIT × host CPUs`. The reserve keeps room for harness, the host-side Go
//! builds and the page cache; the overcommit factor allows two vCPU threads per host CPU, beyond
//! which TCG (and even KVM) guests slow down so much that boot and package timeouts fire.

/// Memory (MiB) kept free for the host: harness, `go build`, the page cache.
pub const HOST_RESERVE_MIB: u64 = 1024;

/// vCPUs allowed per host CPU across all VMs.
pub const CPU_OVERCOMMIT: u64 = 2;

/// What the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// `MemAvailable` from `/proc/meminfo`, in MiB.
    pub mem_available_mib: u64,
    /// Host CPUs (available parallelism).
    pub cpus: u64,
}

/// What one VM asks for (`[vm] memory_mib`, `[vm] cpus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmShape {
    pub memory_mib: u64,
    pub cpus: u64,
}

/// `--vms N` does not fit the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--vms {wanted} does not fit this host: {reason}; at most {max} VM(s) of {mem} MiB and {cpus} vCPU(s) fit. Ask for --vms {max}{hint}, or give each VM less with --set vm.memory_mib=… / --set vm.cpus=… ([vm] memory_mib, [vm] cpus)",
    max = .max,
    mem = .shape.memory_mib,
    cpus = .shape.cpus,
    hint = if *.max == 0 { " (none fit: free memory first)" } else { "" }
)]
pub struct CapacityError {
    pub wanted: u32,
    pub max: u32,
    pub shape: VmShape,
    /// Which limit the request broke, with the numbers.
    pub reason: String,
}

/// The most VMs of `shape` the host holds (pure).
pub fn max_vms(host: HostResources, shape: VmShape) -> u32 {
    let by_mem = host.mem_available_mib.saturating_sub(HOST_RESERVE_MIB) / shape.memory_mib.max(1);
    let by_cpu = host.cpus.max(1) * CPU_OVERCOMMIT / shape.cpus.max(1);
    by_mem.min(by_cpu).min(u64::from(u32::MAX)) as u32
}

/// Refuses `wanted` VMs when the host cannot hold them, naming the limit and the most it can (pure).
pub fn check(host: HostResources, shape: VmShape, wanted: u32) -> Result<(), CapacityError> {
    let max = max_vms(host, shape);
    if wanted <= max {
        return Ok(());
    }
    let n = u64::from(wanted);
    let mem_need = n * shape.memory_mib + HOST_RESERVE_MIB;
    let reason = if mem_need > host.mem_available_mib {
        format!(
            "{wanted} × {} MiB + {HOST_RESERVE_MIB} MiB host reserve = {mem_need} MiB, but only {} MiB are available (MemAvailable)",
            shape.memory_mib, host.mem_available_mib
        )
    } else {
        format!(
            "{wanted} × {} vCPUs = {} vCPUs, more than {CPU_OVERCOMMIT} per host CPU ({} CPUs)",
            shape.cpus,
            n * shape.cpus,
            host.cpus
        )
    };
    Err(CapacityError {
        wanted,
        max,
        shape,
        reason,
    })
}

/// `MemAvailable` in MiB from the text of `/proc/meminfo` (pure).
pub fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024)
    })
}

/// This host's resources, from `/proc/meminfo` and the available parallelism.
pub fn host_resources() -> std::io::Result<HostResources> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let mem = parse_meminfo(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "/proc/meminfo has no MemAvailable line",
        )
    })?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    Ok(HostResources {
        mem_available_mib: mem,
        cpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: VmShape = VmShape {
        memory_mib: 1024,
        cpus: 2,
    };

    fn host(mem: u64, cpus: u64) -> HostResources {
        HostResources {
            mem_available_mib: mem,
            cpus,
        }
    }

    #[test]
    fn memory_limits_with_the_reserve() {
        // 4 GiB available: 3 GiB after the reserve → 3 VMs of 1 GiB (CPUs allow 8).
        let h = host(4096, 8);
        assert_eq!(max_vms(h, SHAPE), 3);
        assert!(check(h, SHAPE, 3).is_ok());
        let e = check(h, SHAPE, 4).unwrap_err();
        assert_eq!(e.max, 3);
        let msg = e.to_string();
        assert!(
            msg.contains("4 × 1024 MiB + 1024 MiB host reserve = 5120 MiB"),
            "{msg}"
        );
        assert!(msg.contains("only 4096 MiB are available"), "{msg}");
        assert!(msg.contains("at most 3 VM(s)"), "{msg}");
        assert!(msg.contains("--vms 3"), "{msg}");
        assert!(msg.contains("vm.memory_mib"), "{msg}");
    }

    #[test]
    fn cpus_limit_at_two_vcpus_per_host_cpu() {
        // This machine: 2 CPUs, plenty of memory → 2 VMs of 2 vCPUs, 4 of 1 vCPU.
        let h = host(23_000, 2);
        assert_eq!(max_vms(h, SHAPE), 2);
        assert!(check(h, SHAPE, 2).is_ok());
        let e = check(h, SHAPE, 3).unwrap_err();
        assert!(
            e.to_string()
                .contains("3 × 2 vCPUs = 6 vCPUs, more than 2 per host CPU (2 CPUs)"),
            "{e}"
        );
        assert_eq!(e.max, 2);
        let one = VmShape {
            memory_mib: 1024,
            cpus: 1,
        };
        assert_eq!(max_vms(h, one), 4);
    }

    #[test]
    fn nothing_fits_says_so() {
        let e = check(host(1500, 4), SHAPE, 1).unwrap_err();
        assert_eq!(e.max, 0);
        assert!(e.to_string().contains("none fit"), "{e}");
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   23934312 kB\n";
        assert_eq!(parse_meminfo(text), Some(23934312 / 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert!(host_resources().unwrap().mem_available_mib > 0);
    }
}
