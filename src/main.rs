//! The `mhrouter` command: run the router, check a config, and query a running router.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use mhrouter::config::{Config, DEFAULT_PATH};
use mhrouter::control;
use mhrouter::systemd;

/// Userspace IPv4 router for a small site with two or more ISP uplinks and no BGP: static
/// routes with administrative distance, health probes (IP SLA), object tracking with up/down
/// delays, and NAT overload per uplink.
///
/// Logging goes to stderr, one line per event; set its level with RUST_LOG (default: info).
#[derive(Parser)]
#[command(
    name = "mhrouter",
    version,
    after_help = "Examples:\n  mhrouter check-config\n  mhrouter check-config -c /etc/mhrouter/mhrouter.toml.new\n  mhrouter run\n  mhrouter show route\n  mhrouter show nat uplink isp-a limit 50 --json\n  mhrouter explain 192.168.0.10 172.18.0.6 tcp 40000 443\n  mhrouter clear nat uplink isp-a"
)]
struct Cli {
    /// Control socket of the router to talk to (default: the config's control_socket, else
    /// $MHROUTER_SOCKET, else /run/mhrouter/mhrouter.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Configuration file (default for run and check-config: /etc/mhrouter/mhrouter.toml);
    /// other commands take its control socket.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the router from the configuration; stops cleanly on SIGINT/SIGTERM, re-reads the
    /// configuration on SIGHUP.
    Run,
    /// Validate the configuration (FILE, else --config, else the default); prints
    /// "FILE:LINE: what is wrong" and exits 1 on error.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Show a view of the running router: route, uplinks, probes, tracks, nat [uplink NAME]
    /// [address IP] [limit N] (default 1000 rows), arp, ipv6, counters, vrrp.
    Show {
        #[arg(required = true, num_args = 1.., value_name = "VIEW")]
        what: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Which rule, route, uplink and NAT entry a flow would get now.
    Explain {
        src: String,
        dst: String,
        /// tcp, udp, icmp or a protocol number.
        proto: String,
        sport: Option<String>,
        dport: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration and apply it; a bad config is rejected (exit 1) and the running
    /// one stays.
    Reload,
    /// Reset what `show counters` counts from (metrics stay monotonic), or remove NAT flows:
    /// counters, nat [uplink NAME].
    Clear {
        #[arg(required = true, num_args = 1.., value_name = "WHAT")]
        what: Vec<String>,
    },
    /// Print the man page (man) or a shell completion script (completions SHELL).
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
}

#[derive(Subcommand)]
enum Generated {
    /// The man page, mhrouter(1), in roff.
    Man,
    /// Completions for bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => {
            let file = file.or(cli.config).unwrap_or_else(|| DEFAULT_PATH.into());
            check_config(&file)
        }
        Command::Run => {
            init_logging();
            let path = cli.config.unwrap_or_else(|| DEFAULT_PATH.into());
            let cfg = match Config::from_file(&path) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match mhrouter::router::run(cfg, path, cli.socket) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Show { what, json } => {
            let mut req = format!("show {}", what.join(" "));
            if json {
                req += " --json";
            }
            query(cli.socket, cli.config, &req)
        }
        Command::Explain {
            src,
            dst,
            proto,
            sport,
            dport,
            json,
        } => {
            let mut req = format!("explain {src} {dst} {proto}");
            match (sport, dport) {
                (Some(s), Some(d)) => req += &format!(" {s} {d}"),
                (None, None) => {}
                _ => return fail("explain needs both SPORT and DPORT, or neither"),
            }
            if json {
                req += " --json";
            }
            query(cli.socket, cli.config, &req)
        }
        Command::Reload => query(cli.socket, cli.config, "reload"),
        Command::Clear { what } => {
            query(cli.socket, cli.config, &format!("clear {}", what.join(" ")))
        }
        Command::Generate { what } => {
            // Rendered in memory first: a closed pipe (`| head`) is then an error, not a panic.
            let mut text = Vec::new();
            match what {
                Generated::Man => {
                    let rendered = clap_mangen::Man::new(Cli::command()).render(&mut text);
                    rendered.expect("writing to memory");
                }
                Generated::Completions { shell } => {
                    clap_complete::generate(shell, &mut Cli::command(), "mhrouter", &mut text);
                }
            }
            match std::io::stdout().write_all(&text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match Config::from_file(file) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} uplinks, {} routes, {} probes, {} tracks)",
                file.display(),
                cfg.uplinks.len(),
                cfg.routes.len(),
                cfg.probes.len(),
                cfg.tracks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn query(socket: Option<PathBuf>, config: Option<PathBuf>, request: &str) -> ExitCode {
    let from_config = match config.map(|p| Config::from_file(&p)) {
        Some(Ok(c)) => Some(c.router.control_socket),
        Some(Err(e)) => return fail(e),
        None => None,
    };
    let path = control::socket::socket_path(socket, from_config);
    match control::socket::call(&path, request) {
        Ok(body) => {
            let _ = std::io::stdout().write_all(body.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("mhrouter: {e}");
    ExitCode::FAILURE
}

fn init_logging() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if systemd::stderr_is_journal() {
        // The journal stamps each line itself and reads its priority from the `<N>` prefix.
        builder.format(|out, record| {
            writeln!(
                out,
                "<{}>{}",
                systemd::priority(record.level()),
                record.args()
            )
        });
    } else {
        builder.format_timestamp_millis().format_target(false);
    }
    builder.init();
}
