//! `harness console` (the VM's screen in a VNC viewer) and `harness screenshot` (a screendump).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use provision::vm::Vm;
use provision::vm::console::Console;

use crate::context::Context;

/// `harness console`
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Print how to connect instead of starting a viewer.
    #[arg(long)]
    pub print: bool,
    /// Print the password of a TCP console (`[vm] console = "tcp"`) and nothing else.
    #[arg(long, conflicts_with = "print")]
    pub password: bool,
    /// The viewer to start (default: the first of remote-viewer, vncviewer, gvncviewer on PATH).
    #[arg(long, value_name = "PROGRAM")]
    pub viewer: Option<String>,
}

/// `harness screenshot`
#[derive(Debug, Args)]
pub struct ScreenshotArgs {
    /// Where to write the PNG (default: `<state>/vms/<name>/screendumps/screenshot-<time>.png`).
    pub file: Option<PathBuf>,
}

/// Viewers `harness console` looks for, in order.
pub const VIEWERS: &[&str] = &["remote-viewer", "vncviewer", "gvncviewer"];

/// The command line that opens `console` in `viewer`; `None` if that viewer cannot (pure).
pub fn viewer_argv(viewer: &str, console: &Console) -> Option<Vec<String>> {
    let name = Path::new(viewer).file_name()?.to_str()?;
    let target = match (name, console) {
        ("remote-viewer", c) => c.uri(),
        // TigerVNC: a Unix socket by its path, a port after a double colon.
        ("vncviewer", Console::VncUnix { socket }) => socket.display().to_string(),
        ("vncviewer", Console::VncTcp { host, port, .. }) => format!("{host}::{port}"),
        // gtk-vnc's viewer knows only HOST:DISPLAY.
        ("gvncviewer", Console::VncTcp { host, port, .. }) => {
            format!("{host}:{}", port.checked_sub(5900)?)
        }
        _ => return None,
    };
    Some(vec![viewer.to_string(), target])
}

/// `name` in the directories of a PATH value, if it is there (pure but for the file checks).
pub fn find_in_path(path_var: &str, name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::split_paths(path_var)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// How to connect by hand, from this host or from another one through SSH (pure).
pub fn instructions(c: &Console) -> String {
    let mut out = format!("console: VNC at {}\n", c.address());
    match c {
        Console::VncUnix { socket } => {
            let s = socket.display();
            out.push_str(&format!(
                "  remote-viewer {}\n  vncviewer {s}          (TigerVNC 1.11 or later)\n\
                 from another machine: ssh -L 5900:{s} USER@THIS-HOST, then vncviewer localhost::5900\n",
                c.uri()
            ));
        }
        Console::VncTcp { host, port, .. } => {
            out.push_str(&format!(
                "  remote-viewer {}\n  vncviewer {host}::{port}\n\
                 password: `harness console --password` (it is asked for by the viewer)\n\
                 from another machine: ssh -L 5900:{host}:{port} USER@THIS-HOST, then vncviewer localhost::5900\n",
                c.uri()
            ));
        }
    }
    out
}

fn running_console(ctx: &Context) -> anyhow::Result<Console> {
    let mut vm = Vm::inspect(&ctx.config.vm, &ctx.vm_dirs())?;
    vm.console().context("finding the VM's console")?.context(
        "the VM runs without a console ([vm] console = \"none\"); set console = \"unix\" \
             (or \"tcp\") and restart it with `harness down` and `harness up`",
    )
}

pub fn run_console(ctx: &Context, args: &ConsoleArgs) -> anyhow::Result<ExitCode> {
    let c = running_console(ctx)?;
    if args.password {
        let pw = c.password()?.context(
            "this console is a Unix socket and has no password (only this user can open it)",
        )?;
        println!("{pw}");
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "console": c, "address": c.address(), "uri": c.uri(),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.print {
        print!("{}", instructions(&c));
        return Ok(ExitCode::SUCCESS);
    }
    let path_var = std::env::var("PATH").unwrap_or_default();
    let candidates: Vec<&str> = match &args.viewer {
        Some(v) => vec![v.as_str()],
        None => VIEWERS.to_vec(),
    };
    let found = candidates.iter().find_map(|v| {
        let exe = find_in_path(&path_var, v)?;
        viewer_argv(&exe.display().to_string(), &c)
    });
    let Some(argv) = found else {
        eprintln!(
            "no VNC viewer that can open this console is on PATH (tried {}); install \
             virt-viewer or tigervnc-viewer, or connect by hand:",
            candidates.join(", ")
        );
        print!("{}", instructions(&c));
        return Ok(ExitCode::from(2));
    };
    start_viewer(ctx, &argv, &c)
}

/// Start the viewer and leave it running; fail if it exits with an error within two seconds.
fn start_viewer(ctx: &Context, argv: &[String], c: &Console) -> anyhow::Result<ExitCode> {
    eprintln!("opening {} with {}", c.address(), argv[0]);
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) && !ctx.cancel.is_cancelled() {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::bail!(
                "{} exited with {status} (no display? DISPLAY/WAYLAND_DISPLAY unset over SSH); \
                 connect by hand instead:\n{}",
                argv[0],
                instructions(c)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ExitCode::SUCCESS)
}

/// Default screenshot file: in the VM's screendumps directory, named by the time.
pub fn default_shot(state: &Path, vm: &str, unix_seconds: u64) -> PathBuf {
    provision::vm::state::VmPaths::new(state, vm)
        .screendumps
        .join(format!("screenshot-{unix_seconds}.png"))
}

pub fn run_screenshot(ctx: &Context, args: &ScreenshotArgs) -> anyhow::Result<ExitCode> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let file = match &args.file {
        Some(f) => std::path::absolute(f).with_context(|| format!("resolving {}", f.display()))?,
        None => default_shot(&ctx.paths.state, &ctx.config.vm.name, now),
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut vm = Vm::inspect(&ctx.config.vm, &ctx.vm_dirs())?;
    let written = vm
        .screendump(&file)
        .context("taking a screenshot of the VM")?;
    if ctx.json {
        println!("{}", serde_json::json!({ "file": written }));
    } else {
        println!("{}", written.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix() -> Console {
        Console::VncUnix {
            socket: "/s/vms/efw/vnc.sock".into(),
        }
    }

    fn tcp() -> Console {
        Console::VncTcp {
            host: "127.0.0.1".into(),
            port: 5902,
            password_file: "/s/vms/efw/vnc-password".into(),
        }
    }

    #[test]
    fn each_viewer_gets_the_address_form_it_understands() {
        assert_eq!(
            viewer_argv("/usr/bin/remote-viewer", &unix()).unwrap(),
            ["/usr/bin/remote-viewer", "vnc+unix:///s/vms/efw/vnc.sock"]
        );
        assert_eq!(
            viewer_argv("remote-viewer", &tcp()).unwrap()[1],
            "vnc://127.0.0.1:5902"
        );
        assert_eq!(
            viewer_argv("vncviewer", &unix()).unwrap()[1],
            "/s/vms/efw/vnc.sock"
        );
        assert_eq!(
            viewer_argv("vncviewer", &tcp()).unwrap()[1],
            "127.0.0.1::5902"
        );
        assert_eq!(viewer_argv("gvncviewer", &tcp()).unwrap()[1], "127.0.0.1:2");
        assert_eq!(viewer_argv("gvncviewer", &unix()), None);
        assert_eq!(viewer_argv("xterm", &unix()), None);
    }

    #[test]
    fn instructions_never_contain_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        provision::vm::console::write_password(&pw, "Secr3tPw").unwrap();
        let c = Console::VncTcp {
            host: "127.0.0.1".into(),
            port: 5902,
            password_file: pw,
        };
        let text = instructions(&c);
        assert!(text.contains("vncviewer 127.0.0.1::5902"), "{text}");
        assert!(text.contains("harness console --password"), "{text}");
        assert!(!text.contains("Secr3tPw"), "{text}");
        assert_eq!(c.password().unwrap().as_deref(), Some("Secr3tPw"));
        let text = instructions(&unix());
        assert!(text.contains("ssh -L 5900:/s/vms/efw/vnc.sock"), "{text}");
    }

    #[test]
    fn viewers_are_found_on_path_only_when_there() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("vncviewer");
        std::fs::write(&exe, "").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_in_path(&path, "vncviewer"), Some(exe));
        assert_eq!(find_in_path(&path, "remote-viewer"), None);
    }

    #[test]
    fn screenshots_default_to_the_vm_screendumps_dir() {
        assert_eq!(
            default_shot(Path::new("/s"), "efw", 7),
            Path::new("/s/vms/efw/screendumps/screenshot-7.png")
        );
    }
}
