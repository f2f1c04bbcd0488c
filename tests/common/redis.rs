//! A real `redis-server` (Debian's) for the fleet tests: on a free loopback port, in its own
//! temporary directory, without persistence unless asked; killed with SIGKILL and restarted
//! on the same port to play an outage; stopped when dropped.
//!
//! ```ignore
//! let Some(mut redis) = RedisServer::start() else { return };  // skipped only outside CI
//! redis.kill();
//! redis.restart();
//! ```
//!
//! Without `redis-server` on the machine a test fails under `CI=true` (scripts/test installs
//! it) and is skipped with a note otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisBuilder {
    password: Option<String>,
    tls: bool,
    args: Vec<String>,
}

pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    password: Option<String>,
    /// With TLS: the CA (here the self-signed certificate itself) clients must trust.
    pub ca_file: Option<PathBuf>,
    args: Vec<String>,
    child: Option<Child>,
}

/// Is `redis-server` here? Under CI its absence is a failure, never a skip.
pub fn available() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "redis-server is not installed (Debian package redis-server)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}: CI must install it to run the fleet tests");
        }
        eprintln!("note: {msg}; skipping this fleet test");
    }
    ok
}

impl RedisBuilder {
    /// `requirepass`: clients must AUTH.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }

    /// Serve TLS only (`rediss://`), with a fresh self-signed certificate for 127.0.0.1.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Any other `redis-server` option, e.g. `["--appendonly", "yes"]`.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn start(self) -> Option<RedisServer> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_addr().port();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(self.args);
        let mut ca_file = None;
        if self.tls {
            let (cert, key) = self_signed(dir.path());
            args.extend(
                [
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cert-file",
                    cert.to_str().expect("utf-8 path"),
                    "--tls-key-file",
                    key.to_str().expect("utf-8 path"),
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from),
            );
            ca_file = Some(cert);
        } else {
            args.extend(["--port".to_string(), port.to_string()]);
        }
        if let Some(pw) = &self.password {
            args.extend(["--requirepass".to_string(), pw.clone()]);
        }
        let mut s = RedisServer {
            port,
            dir,
            password: self.password,
            ca_file,
            args,
            child: None,
        };
        s.restart();
        Some(s)
    }
}

/// A certificate and key for 127.0.0.1 and localhost, valid for a day.
fn self_signed(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("redis.crt"), dir.join("redis.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl RedisServer {
    pub fn builder() -> RedisBuilder {
        RedisBuilder {
            password: None,
            tls: false,
            args: Vec::new(),
        }
    }

    /// A plain redis-server, no password, no persistence.
    pub fn start() -> Option<RedisServer> {
        Self::builder().start()
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` with TLS), without the password.
    pub fn url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// (Re)start on the same port and wait until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: connections stay open and nothing answers (a Redis that hangs, a black hole).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGKILL: no shutdown, no save, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn client(&self) -> redis::Client {
        let mut info = redis::IntoConnectionInfo::into_connection_info(self.url().as_str())
            .expect("redis url");
        if let Some(pw) = &self.password {
            let r = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(r);
        }
        match &self.ca_file {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).expect("ca file")),
                },
            )
            .expect("tls client"),
            None => redis::Client::open(info).expect("client"),
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut c) = self
            .client()
            .get_connection_with_timeout(Duration::from_millis(200))
        else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }

    /// A command's answer, from a fresh synchronous connection (the test's own view of Redis).
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self
            .client()
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to the test redis");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// `INFO commandstats` as command -> calls (e.g. "evalsha" -> 12).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter_map(|l| {
                let (name, rest) = l.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
