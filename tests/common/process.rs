//! The real `seawall` binary as a child process: killed when dropped, its stderr readable line
//! by line.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped, whatever happened.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// The binary with `args` and `env`, stdout discarded.
pub fn seawall(args: &[&str], env: &[(&str, &Path)], stderr: Stdio) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seawall"));
    cmd.args(args).stdout(Stdio::null()).stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start seawall")
}

pub fn run(args: &[&str], env: &[(&str, &Path)]) -> Proc {
    Proc(seawall(args, env, Stdio::null()))
}

/// Like [`run`], with its stderr lines sent to the receiver as they are written.
pub fn run_logged(args: &[&str]) -> (Proc, std::sync::mpsc::Receiver<String>) {
    let mut child = seawall(args, &[], Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// The first line from `lines` containing `needle`, waiting up to `within`.
pub fn line_with(
    lines: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// The `[server]` table of a real-binary test: `listen`, `admin`, two worker threads, no access
/// log, and its upgrade socket and pid file in `dir` (so tests never share them).
pub fn server_section(
    dir: &Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> String {
    format!(
        r#"[server]
listen = ["{listen}"]
admin_listen = "{admin}"
threads = 2
access_log = false
upgrade_sock = "{d}/up.sock"
pid_file = "{d}/pid"
"#,
        d = dir.display()
    )
}

/// `seawall run --config CONFIG`, waited for until it logs that it is ready (30 s at most).
pub fn run_ready(config: &Path) -> (Proc, std::sync::mpsc::Receiver<String>) {
    let (p, lines) = run_logged(&["run", "--config", config.to_str().expect("UTF-8 path")]);
    assert!(
        line_with(&lines, "seawall is ready", Duration::from_secs(30)).is_some(),
        "seawall did not start ({})",
        config.display()
    );
    (p, lines)
}
