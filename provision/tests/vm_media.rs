//! Windows media without Windows: the xorriso remaster on a small synthetic ISO laid out like a
//! Windows ISO, and the QEMU command line of a Windows VM.

use std::path::{Path, PathBuf};
use std::process::Command;

use provision::media::{remaster, unattend};
use provision::vm::qemu::cmdline::{self, AccelKind, DiskBus, Firmware, NicModel, QemuSpec};

fn xorriso(args: &[&str]) -> String {
    let out = Command::new("xorriso")
        .args(args)
        .output()
        .expect("xorriso");
    assert!(
        out.status.success(),
        "xorriso {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// An ISO with the boot files and the prompting UEFI boot image, like Microsoft's.
fn synthetic_windows_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    for (f, size) in [
        ("boot/etfsboot.com", 4096),
        ("efi/microsoft/boot/efisys.bin", 65536),
        ("efi/microsoft/boot/efisys_noprompt.bin", 65536),
        ("sources/boot.wim", 1000),
        ("sources/install.wim", 3000),
        ("setup.exe", 10),
    ] {
        let p = tree.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let byte = if f.contains("noprompt") { 0x4e } else { 0 };
        std::fs::write(&p, vec![byte; size]).unwrap();
    }
    let iso = dir.join("win11.iso");
    xorriso(&[
        "-as",
        "mkisofs",
        "-quiet",
        "-iso-level",
        "3",
        "-J",
        "-r",
        "-V",
        "CCCOMA_X64FRE_EN-US_DV9",
        "-b",
        "boot/etfsboot.com",
        "-no-emul-boot",
        "-boot-load-size",
        "8",
        "-eltorito-alt-boot",
        "-e",
        "efi/microsoft/boot/efisys.bin",
        "-no-emul-boot",
        "-o",
        iso.to_str().unwrap(),
        tree.to_str().unwrap(),
    ]);
    iso
}

fn settings() -> unattend::Settings {
    unattend::Settings {
        user: "harness".into(),
        edition: "Windows 11 Pro".into(),
        product_key: "VK7JG-NPHTM-C97JM-9MPGT-3V66T".into(),
        computer_name: "EFW-TEST".into(),
        authorized_keys: "ssh-ed25519 AAAAC3Nza test@host".into(),
    }
}

#[test]
fn remaster_adds_the_answer_media_and_boots_uefi_without_a_prompt() {
    let d = tempfile::tempdir().unwrap();
    let iso = synthetic_windows_iso(d.path());
    let before = xorriso(&[
        "-indev",
        iso.to_str().unwrap(),
        "-report_el_torito",
        "plain",
    ]);
    assert!(
        before.contains("/efi/microsoft/boot/efisys.bin"),
        "{before}"
    );

    let media = d.path().join("media");
    unattend::write_media_tree(&media, &settings()).unwrap();
    let out = remaster::remaster(&iso, &media, &d.path().join("install.iso")).unwrap();

    let report = xorriso(&[
        "-indev",
        out.to_str().unwrap(),
        "-report_el_torito",
        "plain",
    ]);
    let img_paths: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("El Torito img path"))
        .collect();
    assert_eq!(img_paths.len(), 2, "{report}");
    assert!(img_paths[0].ends_with("/boot/etfsboot.com"), "{report}");
    assert!(
        img_paths[1].ends_with("/efi/microsoft/boot/efisys_noprompt.bin"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("El Torito boot img") && l.contains("UEFI")),
        "{report}"
    );

    // The answer file, scripts and key are at the root, byte for byte; the original files stay.
    let x = d.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    for f in [
        "autounattend.xml",
        "harness/setup-openssh.ps1",
        "harness/authorized_keys",
        "sources/install.wim",
    ] {
        let dest = x.join(f.replace('/', "_"));
        xorriso(&[
            "-osirrox",
            "on",
            "-indev",
            out.to_str().unwrap(),
            "-extract",
            &format!("/{f}"),
            dest.to_str().unwrap(),
        ]);
        if f.starts_with("sources") {
            assert_eq!(std::fs::read(&dest).unwrap().len(), 3000);
        } else {
            assert_eq!(
                std::fs::read(&dest).unwrap(),
                std::fs::read(media.join(f)).unwrap(),
                "{f}"
            );
        }
    }
}

#[test]
fn a_non_windows_iso_is_refused_with_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("t");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("README"), "hi").unwrap();
    let iso = d.path().join("linux.iso");
    xorriso(&[
        "-as",
        "mkisofs",
        "-quiet",
        "-o",
        iso.to_str().unwrap(),
        tree.to_str().unwrap(),
    ]);
    let e = remaster::remaster(&iso, &tree, &d.path().join("o.iso"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not look like a Windows install ISO") && e.contains("/boot/etfsboot.com"),
        "{e}"
    );
    assert!(!d.path().join("o.iso").exists());
}

#[test]
fn windows_vm_command_line() {
    let spec = QemuSpec {
        name: "efw".into(),
        accel: AccelKind::Tcg,
        memory_mib: 8192,
        cpus: 4,
        firmware: Some(Firmware {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/s/vms/efw/vars.qcow2".into(),
        }),
        tpm_socket: Some("/s/vms/efw/swtpm.sock".into()),
        pvpanic: true,
        disk: "/s/vms/efw/disk.qcow2".into(),
        disk_bus: DiskBus::Sata,
        cdroms: vec![
            "/s/vms/efw/media/install.iso".into(),
            "/c/virtio-win/virtio-win-0.1.266.iso".into(),
        ],
        nic: NicModel::E1000,
        ssh_port: 40022,
        qmp_socket: "/s/vms/efw/qmp.sock".into(),
        events_socket: "/s/vms/efw/qmp-events.sock".into(),
        serial_log: "/s/vms/efw/serial.log".into(),
        kernel: None,
        loadvm: None,
        windows: true,
        console: None,
    };
    let got = cmdline::args(&spec).join(" ");
    let want = "-name efw,process=harness-efw -nodefaults -no-user-config -display none \
-machine q35 -accel tcg -cpu max,hv-crash -m 8192 -smp 4 \
-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
-drive if=pflash,format=qcow2,unit=1,file=/s/vms/efw/vars.qcow2 \
-chardev socket,id=chrtpm,path=/s/vms/efw/swtpm.sock -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
-device pvpanic \
-drive file=/s/vms/efw/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap -device ide-hd,drive=disk0,bus=ide.0,bootindex=1 \
-drive file=/s/vms/efw/media/install.iso,if=none,id=cd0,media=cdrom,readonly=on -device ide-cd,drive=cd0,bus=ide.1,bootindex=0 \
-drive file=/c/virtio-win/virtio-win-0.1.266.iso,if=none,id=cd1,media=cdrom,readonly=on -device ide-cd,drive=cd1,bus=ide.2 \
-netdev user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22 -device e1000,netdev=net0 \
-qmp unix:/s/vms/efw/qmp.sock,server=on,wait=off \
-qmp unix:/s/vms/efw/qmp-events.sock,server=on,wait=off -action panic=none \
-serial file:/s/vms/efw/serial.log -device VGA \
-rtc base=localtime";
    assert_eq!(got, want);
}

/// QEMU itself accepts the Windows command line (firmware, swtpm TPM, pvpanic, SATA, CD-ROMs,
/// e1000, QMP): started paused, queried over QMP, then quit. No guest code runs.
#[test]
fn qemu_accepts_the_windows_command_line() {
    use provision::vm::process::Process;
    use provision::vm::qmp::Qmp;
    use std::time::{Duration, Instant};

    let d = tempfile::tempdir().unwrap();
    let p = |f: &str| d.path().join(f);
    let iso = synthetic_windows_iso(d.path());
    provision::vm::image::create_blank(&p("disk.qcow2"), 1).unwrap();
    provision::vm::image::convert_to_qcow2(
        Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"),
        &p("vars.qcow2"),
    )
    .unwrap();
    std::fs::create_dir_all(p("tpm")).unwrap();
    let mut swtpm = Command::new("swtpm");
    swtpm
        .args(["socket", "--tpm2", "--terminate", "--tpmstate"])
        .arg(format!("dir={}", p("tpm").display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", p("swtpm.sock").display()));
    let _swtpm = Process::spawn(swtpm, &p("swtpm.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p("swtpm.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "swtpm socket missing: {}",
            std::fs::read_to_string(p("swtpm.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let spec = QemuSpec {
        name: "efw".into(),
        accel: AccelKind::Tcg,
        memory_mib: 256,
        cpus: 1,
        firmware: Some(Firmware {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: p("vars.qcow2"),
        }),
        tpm_socket: Some(p("swtpm.sock")),
        pvpanic: true,
        disk: p("disk.qcow2"),
        disk_bus: DiskBus::Sata,
        cdroms: vec![iso.clone(), iso],
        nic: NicModel::E1000,
        ssh_port: std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        qmp_socket: p("qmp.sock"),
        events_socket: p("qmp-events.sock"),
        serial_log: p("serial.log"),
        kernel: None,
        loadvm: None,
        windows: true,
        console: Some(provision::vm::console::Console::VncUnix {
            socket: p("vnc.sock"),
        }),
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(cmdline::args(&spec)).arg("-S");
    let mut qemu = Process::spawn(cmd, &p("qemu.log")).unwrap();
    let mut q = Qmp::connect(&p("qmp.sock"), Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(p("qemu.log")).unwrap_or_default()
        )
    });
    assert_eq!(q.status().unwrap(), "prelaunch");
    assert!(
        p("vnc.sock").exists(),
        "QEMU took the Windows spec's VNC console"
    );
    let devices = q.hmp("info qtree").unwrap();
    for dev in ["tpm-tis", "pvpanic", "e1000", "ide-cd", "ide-hd"] {
        assert!(devices.contains(&format!("dev: {dev}")), "{dev} missing");
    }
    q.quit().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while qemu.try_wait().is_none() {
        assert!(Instant::now() < deadline, "qemu did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PowerShell harness generates for Windows VMs parses (the repo-wide walk covers the .ps1 files).
#[test]
fn generated_powershell_parses() {
    use provision::session::GuestOs;
    let sources = [
        unattend::base_setup_source(Some(r"C:\harness\PsExec64.exe"), Some(r"C:\harness\go.zip")),
        unattend::base_setup_source(None, None),
        provision::vm::qemu::clock_script(GuestOs::Windows, 1_700_000_000),
        unattend::SETUP_OPENSSH_PS1.to_string(),
    ];
    for src in sources {
        let problems = testsupport::ps1::check_source(&src);
        assert!(problems.is_empty(), "{problems:?}\n{src}");
    }
    assert!(unattend::base_setup_source(Some("C:\\a b"), None).ends_with("-PsExec 'C:\\a b'"));
}

/// Keypress media: the small answer ISO carries the answer file where Setup looks (a CD root).
#[test]
fn answer_iso_carries_the_answer_file_at_its_root() {
    let d = tempfile::tempdir().unwrap();
    let media = d.path().join("media");
    unattend::write_media_tree(&media, &settings()).unwrap();
    let iso = remaster::answer_iso(&media, &d.path().join("answer.iso")).unwrap();
    let dest = d.path().join("extracted.xml");
    xorriso(&[
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        "/autounattend.xml",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(media.join("autounattend.xml")).unwrap()
    );
}
