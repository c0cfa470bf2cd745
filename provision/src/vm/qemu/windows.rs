//! First install of Windows from the ISO, base setup, clean shutdown, and freezing the result as
//! the golden base image (keyed by ISO digest + install settings).
//!
//! This path cannot run on the development machine (no Windows ISO, TCG only); its pieces
//! (answer file, remaster, command line) are unit-tested, the flow itself is not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{QemuVm, windows_base_name};
use crate::config::InstallMedia;
use crate::media;
use crate::session::{GuestOs, RemoteCommand};
use crate::vm::UpOptions;
use crate::vm::error::VmError;
use crate::vm::events::{Phase, VmEvent};
use crate::vm::image;
use crate::vm::keys::SshKey;
use crate::vm::qmp::Qmp;
use crate::vm::readiness;

#[derive(Debug, Default, Serialize, Deserialize)]
struct DigestCache(BTreeMap<String, (u64, u64, String)>);

/// `[vm] debugging_tools` with a leading `~/` expanded to $HOME.
fn debugging_tools(cfg: &crate::config::VmConfig) -> Option<PathBuf> {
    let p = cfg.debugging_tools.as_ref()?;
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
        _ => Some(p.clone()),
    }
}

fn media_err(e: media::MediaError) -> VmError {
    VmError::Config(e.to_string())
}

/// SHA-256 of the ISO, cached by path, size and mtime (hashing 6 GiB takes a while).
fn iso_digest(iso: &Path, images: &Path) -> Result<String, VmError> {
    let meta = std::fs::metadata(iso).map_err(VmError::io("reading the Windows ISO", iso))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cache_file = images.join("iso-digests.json");
    let mut cache: DigestCache = std::fs::read(&cache_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let key = iso.display().to_string();
    if let Some((size, mt, digest)) = cache.0.get(&key)
        && *size == meta.len()
        && *mt == mtime
    {
        return Ok(digest.clone());
    }
    let digest = media::virtio_win::sha256_file(iso).map_err(media_err)?;
    cache.0.insert(key, (meta.len(), mtime, digest.clone()));
    let _ = std::fs::write(
        &cache_file,
        serde_json::to_vec_pretty(&cache).unwrap_or_default(),
    );
    Ok(digest)
}

/// CD-ROMs of the install run, boot disc first: the (remastered or original) Windows ISO, the
/// virtio-win ISO, and with keypress media the small answer ISO (pure).
pub fn install_cdroms(boot_iso: PathBuf, virtio: PathBuf, answer: Option<PathBuf>) -> Vec<PathBuf> {
    let mut v = vec![boot_iso, virtio];
    v.extend(answer);
    v
}

/// QMP `send-key` arguments for the Enter key.
pub fn enter_key() -> serde_json::Value {
    serde_json::json!({ "keys": [{ "type": "qcode", "data": "ret" }] })
}

/// Path of the golden base for the configured ISO if its digest is already known (no hashing).
pub(super) fn cached_base_path(vm: &QemuVm) -> Option<PathBuf> {
    let iso = vm.cfg.iso.as_ref()?;
    let cache: DigestCache = std::fs::read(vm.paths.images.join("iso-digests.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())?;
    let (_, _, digest) = cache.0.get(&iso.display().to_string())?;
    Some(
        vm.paths
            .images
            .join(format!("{}.qcow2", windows_base_name(digest, &vm.cfg))),
    )
}

/// The golden base (and its UEFI variables) for this VM, installing Windows first if needed.
pub(super) fn ensure_base(
    vm: &mut QemuVm,
    key: &SshKey,
    opts: &UpOptions,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<(PathBuf, Option<PathBuf>), VmError> {
    if let Some(img) = vm.cfg.image.clone() {
        if !img.is_file() {
            return Err(VmError::Config(format!(
                "[vm] image {} does not exist",
                img.display()
            )));
        }
        return Ok((img, None));
    }
    let iso = vm.cfg.iso.clone().ok_or_else(|| {
        VmError::Config(
            "os = \"windows\" needs `iso` (an en-US Windows 11 ISO; or --iso) or a ready `image`"
                .into(),
        )
    })?;
    if let Some(d) = debugging_tools(&vm.cfg)
        && !d.is_file()
    {
        return Err(VmError::Config(format!(
            "[vm] debugging_tools {} is not a file: point it at the Windows SDK installer \
             (winsdksetup.exe) or the Debugging Tools MSI, or remove the key",
            d.display()
        )));
    }
    let digest = iso_digest(&iso, &vm.paths.images)?;
    let name = windows_base_name(&digest, &vm.cfg);
    let base = vm.paths.images.join(format!("{name}.qcow2"));
    let vars = vm.paths.images.join(format!("{name}.vars.qcow2"));
    if base.is_file() && vars.is_file() {
        return Ok((base, Some(vars)));
    }
    install(vm, &iso, key, &base, &vars, opts, on_event)?;
    Ok((base, Some(vars)))
}

/// The golden image's base setup in a fresh guest, as its own phase: PsExec64, the optional Go
/// zip (`base-setup.ps1`), then the optional Debugging Tools (`[vm] debugging_tools`).
fn base_setup(
    vm: &QemuVm,
    session: &mut crate::session::Session,
    opts: &UpOptions,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<(), VmError> {
    let t = Instant::now();
    let limit = Duration::from_secs(1800);
    on_event(VmEvent::Started {
        phase: Phase::BaseSetup,
        timeout: limit,
    });
    session.exec_capture(
        &RemoteCommand::script("New-Item -ItemType Directory -Force C:\\harness | Out-Null")
            .timeout(Duration::from_secs(60)),
    )?;
    if let Some(psexec) = &opts.psexec {
        session.upload_file(psexec, "C:/harness/PsExec64.exe")?;
    }
    if let Some(go) = &vm.cfg.go_zip {
        session.upload_file(go, "C:/harness/go.zip")?;
    }
    let source = media::unattend::base_setup_source(
        opts.psexec.as_ref().map(|_| r"C:\harness\PsExec64.exe"),
        vm.cfg.go_zip.as_ref().map(|_| r"C:\harness\go.zip"),
    );
    let out = session.exec_capture(&RemoteCommand::script(source).timeout(limit))?;
    if !out.status.success() {
        return Err(VmError::Config(format!(
            "Windows base setup failed (exit {}): {}",
            out.status.code,
            out.stderr
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    if let Some(installer) = debugging_tools(&vm.cfg) {
        crate::debugger::install_debugging_tools(session, &installer, r"C:\harness").map_err(
            |e| {
                VmError::Config(format!(
                    "installing the Debugging Tools from [vm] debugging_tools {} failed: {e}; \
                     check the installer (or remove the key)",
                    installer.display()
                ))
            },
        )?;
    }
    on_event(VmEvent::Finished {
        phase: Phase::BaseSetup,
        elapsed: t.elapsed(),
    });
    Ok(())
}

/// What the install works on before it is frozen: the media tree (answer file, setup
/// scripts), the virtio-win ISO, and the partial disk and UEFI variables.
struct Staged {
    tree: PathBuf,
    virtio: PathBuf,
    disk: PathBuf,
    vars: PathBuf,
}

fn install(
    vm: &mut QemuVm,
    iso: &Path,
    key: &SshKey,
    base: &Path,
    vars: &Path,
    opts: &UpOptions,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<(), VmError> {
    let staged = stage(vm, key, base, vars, on_event)?;
    let accel = vm.accel(on_event);
    let port = vm.forward_port()?;
    let keypress = vm.cfg.install_media == InstallMedia::Keypress;
    let cdroms = discs(vm, iso, &staged, keypress)?;
    let mut spec = vm.spec(accel, port, key, &staged.disk, cdroms, None);
    if let Some(fw) = spec.firmware.as_mut() {
        fw.vars = staged.vars.clone();
    }
    vm.launch(&spec, None)?;
    let mut session = wait_for_install(vm, port, key, keypress, opts.cancel.as_ref(), on_event)?;
    base_setup(vm, &mut session, opts, on_event)?;
    drop(session);
    debug_assert_eq!(vm.cfg.os, GuestOs::Windows);
    freeze(vm, &staged, base, vars, on_event)
}

/// Prepares what the install boots with, as the disk phase: the media tree, the virtio-win ISO,
/// a blank partial disk and fresh UEFI variables beside `base` and `vars`.
fn stage(
    vm: &mut QemuVm,
    key: &SshKey,
    base: &Path,
    vars: &Path,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<Staged, VmError> {
    let t = Instant::now();
    on_event(VmEvent::Started {
        phase: Phase::PreparingDisk,
        timeout: Duration::from_secs(1800),
    });
    vm.paths.create()?;
    let tree = vm.paths.media_dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    media::unattend::write_media_tree(
        &tree,
        &media::unattend::Settings {
            user: vm.cfg.user.clone(),
            edition: vm.cfg.windows_edition.clone(),
            product_key: vm.cfg.product_key.clone(),
            computer_name: format!("EFW-{}", vm.cfg.name.to_ascii_uppercase())
                .chars()
                .take(15)
                .collect(),
            authorized_keys: key.public.clone(),
        },
    )
    .map_err(media_err)?;
    let virtio = media::virtio_win::ensure(
        vm.cfg.virtio_win_iso.as_deref(),
        &vm.dirs.cache.join("virtio-win"),
    )
    .map_err(media_err)?;
    let disk = base.with_extension("partial.qcow2");
    let vars_partial = vars.with_extension("partial.qcow2");
    for f in [&disk, &vars_partial] {
        let _ = std::fs::remove_file(f);
    }
    image::create_blank(&disk, vm.cfg.disk_gib)?;
    image::convert_to_qcow2(&vm.firmware_files().1, &vars_partial)?;
    on_event(VmEvent::Finished {
        phase: Phase::PreparingDisk,
        elapsed: t.elapsed(),
    });
    Ok(Staged {
        tree,
        virtio,
        disk,
        vars: vars_partial,
    })
}

/// The install's CD-ROMs: the remastered ISO (answer file inside, no prompt), or with
/// keypress media the original ISO plus the small answer ISO; virtio-win either way.
fn discs(
    vm: &QemuVm,
    iso: &Path,
    staged: &Staged,
    keypress: bool,
) -> Result<Vec<PathBuf>, VmError> {
    let boot_iso = if keypress {
        iso.to_path_buf()
    } else {
        media::remaster::remaster(iso, &staged.tree, &vm.paths.media_dir.join("install.iso"))
            .map_err(media_err)?
    };
    let answer = if keypress {
        Some(
            media::remaster::answer_iso(&staged.tree, &vm.paths.media_dir.join("answer.iso"))
                .map_err(media_err)?,
        )
    } else {
        None
    };
    Ok(install_cdroms(boot_iso, staged.virtio.clone(), answer))
}

/// Waits for Windows Setup (until its first reboot) and the installed system's first boot,
/// then logs in; all within `install_timeout`.
fn wait_for_install(
    vm: &mut QemuVm,
    port: u16,
    key: &SshKey,
    keypress: bool,
    cancel: Option<&hostproc::Cancel>,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<crate::session::Session, VmError> {
    let install_limit = Duration::from_secs(vm.cfg.install_timeout);
    let started = Instant::now();

    // Setup copies files in WinPE, then reboots: the first RESET event ends this phase.
    let mut qmp = Qmp::connect(&vm.paths.qmp, Duration::from_secs(30))?;
    vm.wait(
        Phase::InstallingWindows,
        install_limit,
        cancel,
        on_event,
        |_| {
            // Keypress media: answer "Press any key to boot from CD" for the first minute.
            if keypress && started.elapsed() < Duration::from_secs(60) {
                let _ = qmp.execute("send-key", Some(enter_key()));
            }
            let _ = qmp.status();
            Ok(qmp
                .events
                .iter()
                .any(|e| e.get("event").and_then(|v| v.as_str()) == Some("RESET"))
                .then_some(()))
        },
    )?;
    drop(qmp);
    let remaining = install_limit
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(60));
    vm.wait(Phase::FirstBoot, remaining, cancel, on_event, |_| {
        Ok(readiness::ssh_banner(port, Duration::from_secs(2)))
    })?;
    let ep = vm.endpoint(port, key);
    vm.login(&ep, cancel, on_event)
}

/// Shuts the installed guest down cleanly, then stores and freezes its disk and UEFI variables
/// as the golden `base` and `vars`.
fn freeze(
    vm: &mut QemuVm,
    staged: &Staged,
    base: &Path,
    vars: &Path,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<(), VmError> {
    if !vm.down(on_event)? {
        return Err(VmError::NotRunning {
            name: vm.cfg.name.clone(),
        });
    }
    std::fs::rename(&staged.disk, base).map_err(VmError::io("storing the golden image", base))?;
    std::fs::rename(&staged.vars, vars)
        .map_err(VmError::io("storing the golden UEFI variables", vars))?;
    image::freeze(base)?;
    image::freeze(vars)?;
    on_event(VmEvent::Note {
        message: format!("golden image frozen at {}", base.display()),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debugging_tools_path_expands_home() {
        let mut cfg = crate::config::VmConfig::default();
        assert_eq!(debugging_tools(&cfg), None);
        cfg.debugging_tools = Some("/dl/winsdksetup.exe".into());
        assert_eq!(
            debugging_tools(&cfg),
            Some(PathBuf::from("/dl/winsdksetup.exe"))
        );
        if let Some(home) = std::env::var_os("HOME") {
            cfg.debugging_tools = Some("~/dl/winsdksetup.exe".into());
            assert_eq!(
                debugging_tools(&cfg),
                Some(PathBuf::from(home).join("dl/winsdksetup.exe"))
            );
        }
    }

    #[test]
    fn install_discs_boot_the_windows_iso_first() {
        assert_eq!(
            install_cdroms("/m/install.iso".into(), "/c/virtio.iso".into(), None),
            vec![
                PathBuf::from("/m/install.iso"),
                PathBuf::from("/c/virtio.iso")
            ]
        );
        assert_eq!(
            install_cdroms("/w.iso".into(), "/v.iso".into(), Some("/a.iso".into())),
            vec![
                PathBuf::from("/w.iso"),
                PathBuf::from("/v.iso"),
                PathBuf::from("/a.iso")
            ]
        );
        assert_eq!(enter_key()["keys"][0]["data"], "ret");
    }
}
