//! Remaster a Windows ISO with `xorriso` (no root, no loop mount): add the answer media files and
//! make the UEFI El Torito image the no-prompt one, so Setup starts without "Press any key".

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::MediaError;

/// BIOS boot image of Windows install ISOs.
pub const BIOS_BOOT: &str = "/boot/etfsboot.com";
/// UEFI boot image that waits for a key press.
pub const EFI_BOOT_PROMPT: &str = "/efi/microsoft/boot/efisys.bin";
/// UEFI boot image that boots straight into Setup.
pub const EFI_BOOT_NOPROMPT: &str = "/efi/microsoft/boot/efisys_noprompt.bin";

/// `xorriso` arguments to write `out` from `iso` plus the files of `extra_dir` at the root,
/// booting BIOS from etfsboot.com and UEFI from efisys_noprompt.bin (pure).
pub fn xorriso_args(
    iso: &Path,
    out: &Path,
    extra_dir: &Path,
    extra_entries: &[String],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-abort_on");
    push("FAILURE");
    push("-indev");
    a.push(iso.into());
    a.push("-outdev".into());
    a.push(out.into());
    // ISO level 3 so install.wim (> 4 GiB) stays one file (multi-extent).
    a.push("-compliance".into());
    a.push("iso_9660_level=3".into());
    for e in extra_entries {
        a.push("-map".into());
        a.push(extra_dir.join(e).into());
        a.push(format!("/{e}").into());
    }
    for s in [
        "-boot_image",
        "any",
        "discard",
        "-boot_image",
        "any",
        &format!("bin_path={BIOS_BOOT}"),
        "-boot_image",
        "any",
        "emul_type=no_emulation",
        "-boot_image",
        "any",
        "load_size=4096",
        "-boot_image",
        "any",
        "boot_info_table=off",
        "-boot_image",
        "any",
        "next",
        "-boot_image",
        "any",
        &format!("efi_path={EFI_BOOT_NOPROMPT}"),
        "-boot_image",
        "any",
        "emul_type=no_emulation",
    ] {
        a.push(s.into());
    }
    a
}

/// Check that `iso` has the boot files of a Windows install ISO (reads the ISO directory only).
pub fn check_windows_iso(iso: &Path) -> Result<(), MediaError> {
    let listing = xorriso(&[
        "-indev".into(),
        iso.into(),
        "-find".into(),
        "/".into(),
        "-type".into(),
        "f".into(),
        "-exec".into(),
        "report_lba".into(),
        "--".into(),
    ])?;
    let lower = listing.to_ascii_lowercase();
    for needed in [BIOS_BOOT, EFI_BOOT_NOPROMPT, "/sources/boot.wim"] {
        if !lower.contains(&format!("'{}'", needed)) {
            return Err(MediaError::NotWindowsIso {
                iso: iso.to_path_buf(),
                missing: needed.to_string(),
            });
        }
    }
    Ok(())
}

/// Write `out`: `iso` + the entries of `extra_dir` (e.g. `autounattend.xml`, `harness`), no-prompt UEFI boot.
pub fn remaster(iso: &Path, extra_dir: &Path, out: &Path) -> Result<PathBuf, MediaError> {
    check_windows_iso(iso)?;
    let mut entries: Vec<String> = std::fs::read_dir(extra_dir)
        .map_err(super::io_err(
            "reading the answer media directory",
            extra_dir,
        ))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    entries.sort();
    let tmp = out.with_extension("iso.partial");
    let _ = std::fs::remove_file(&tmp);
    xorriso(&xorriso_args(iso, &tmp, extra_dir, &entries))?;
    std::fs::rename(&tmp, out).map_err(super::io_err("storing the remastered ISO", out))?;
    Ok(out.to_path_buf())
}

/// A small ISO with just the answer media (Setup also finds `autounattend.xml` on any CD).
pub fn answer_iso(extra_dir: &Path, out: &Path) -> Result<PathBuf, MediaError> {
    xorriso(&[
        "-as".into(),
        "mkisofs".into(),
        "-quiet".into(),
        "-J".into(),
        "-r".into(),
        "-V".into(),
        "HARNESS".into(),
        "-o".into(),
        out.into(),
        extra_dir.into(),
    ])?;
    Ok(out.to_path_buf())
}

fn xorriso(args: &[OsString]) -> Result<String, MediaError> {
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    // A 6 GiB ISO copies in minutes; the bound is generous but finite.
    crate::vm::process::run_tool("xorriso", &refs, Duration::from_secs(1800))
        .map_err(|e| MediaError::Tool(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_map_extra_files_and_switch_to_the_noprompt_efi_image() {
        let a: Vec<String> = xorriso_args(
            Path::new("/w.iso"),
            Path::new("/o.iso"),
            Path::new("/m"),
            &["autounattend.xml".into()],
        )
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
        let has = |pair: &[&str]| {
            a.windows(pair.len())
                .any(|w| w.iter().zip(pair).all(|(x, y)| x == y))
        };
        assert!(has(&["-indev", "/w.iso", "-outdev", "/o.iso"]));
        assert!(has(&["-map", "/m/autounattend.xml", "/autounattend.xml"]));
        assert!(has(&[
            "-boot_image",
            "any",
            "efi_path=/efi/microsoft/boot/efisys_noprompt.bin"
        ]));
        assert!(has(&["-boot_image", "any", "bin_path=/boot/etfsboot.com"]));
        assert!(!a.iter().any(|x| x.ends_with("efisys.bin")));
    }
}
