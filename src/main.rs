//! The `seawall` command: `run` (default), `check`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use seawall::config;
use seawall::server::{self, RunOptions, StartError};

/// mimalloc rather than glibc's malloc: a proxied request makes about 100 small allocations
/// (mostly Pingora's header maps, buffers and tasks), and glibc's malloc and free took 15% of
/// the proxy's CPU. Measured per request under the same load (docs/performance.md): jemalloc
/// instead of glibc took user instructions from 128.5k to 110.1k; mimalloc instead of jemalloc,
/// later, from 98.3k to 91.2k. `no_thp`: without it mimalloc asks for transparent huge pages,
/// which cost 12-14 MiB of resident memory for no measured gain.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "seawall",
    version,
    about = "Edge reverse proxy: nginx-exact rate limits, CSP from approved tags, campaign diversion",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy (the default when no subcommand is given).
    Run(RunArgs),
    /// Validate all three config files; print every problem as FILE:LINE:COL; exit 1 on errors.
    Check(ConfigArg),
    /// Run the proxy with a built-in demo origin, tag hosts and ingestion sink.
    Demo(seawall::demo::DemoArgs),
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// The main config file; it names csp.toml and campaigns.toml.
    #[arg(
        long,
        short,
        env = "SEAWALL_CONFIG",
        default_value = "conf/seawall.toml"
    )]
    config: PathBuf,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Detach and run in the background (Pingora daemon mode; writes the pid file).
    #[arg(long)]
    daemon: bool,
    /// Take the listening sockets over from a running Seawall, then send it SIGQUIT.
    #[arg(long)]
    upgrade: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    seawall::logging::init();
    match cli.cmd {
        Some(Cmd::Check(a)) => check(&a.config),
        Some(Cmd::Demo(a)) => seawall::demo::run(a),
        Some(Cmd::Run(a)) => run(&a),
        None => run(&cli.run),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for d in &loaded.diagnostics.items {
                eprintln!("{d}");
            }
            let s = &loaded.spec;
            println!(
                "{}: OK: {}, {}, {}, {}, {}",
                path.display(),
                plural(s.routes.len(), "route"),
                plural(s.settings.upstreams.len(), "upstream"),
                plural(s.settings.csp.policies.len(), "CSP policy"),
                plural(s.campaigns.launches.len(), "launch"),
                plural(loaded.diagnostics.warnings().count(), "warning")
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            for d in &diags.items {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: {}, {}",
                path.display(),
                plural(diags.errors().count(), "error"),
                plural(diags.warnings().count(), "warning")
            );
            ExitCode::FAILURE
        }
    }
}

/// "1 error", "2 errors", "2 CSP policies", "3 launches".
fn plural(n: usize, word: &str) -> String {
    let suffix = match (n, word.chars().last()) {
        (1, _) => "",
        (_, Some('h')) => "es",
        (_, Some('y')) => return format!("{n} {}ies", &word[..word.len() - 1]),
        _ => "s",
    };
    format!("{n} {word}{suffix}")
}

fn run(a: &RunArgs) -> ExitCode {
    let opts = RunOptions {
        daemon: a.daemon,
        upgrade: a.upgrade,
        in_process: false,
    };
    let started = server::load_state(&a.config.config).and_then(|state| {
        if !a.upgrade {
            server::preflight_bind(&state)?;
        }
        Ok((server::build(state.clone(), &opts)?, state))
    });
    match started {
        Ok((s, state)) => server::run_process(s, state),
        Err(StartError::Config(diags)) => {
            for d in &diags.items {
                eprintln!("{d}");
            }
            eprintln!("seawall: not started: fix the errors above (`seawall check` lists them)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("seawall: not started: {e}");
            ExitCode::FAILURE
        }
    }
}
