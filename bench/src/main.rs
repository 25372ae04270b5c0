//! `imlogin-bench`: the load generator and the baseline server (docs/benchmarks.md).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand};
use imlogin_bench::{self as bench, suite, Target, Users};

#[derive(Parser)]
#[command(
    name = "imlogin-bench",
    about = "Load generator for imlogin, and the bare baseline server"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// The server's address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 1_400_000_000)]
    sdkappid: u32,
    /// The app's UserSig key.
    #[arg(
        long,
        default_value = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
    )]
    key: String,
    /// Client source addresses to use in turn (e.g. 127.0.0.1,127.0.0.2).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
}

impl TargetArgs {
    fn target(&self) -> Target {
        Target {
            addr: self.addr,
            sdkappid: self.sdkappid,
            key: self.key.clone(),
            sources: self.sources.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the baseline server (prints `listening ADDR`).
    Baseline {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// N login handshakes at concurrency C.
    Logins {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Cycle over this many known users.
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// New users (auto-register) named PREFIX-i instead of known ones.
        #[arg(long)]
        new: Option<String>,
        /// Open loop: this many login starts per second.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Hold K logged-in idle sessions and report the server's RSS per session.
    Hold {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 19_000)]
        sessions: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Users are PREFIX-0, PREFIX-1, … (several generators against one cluster use different ones).
        #[arg(long, default_value = "hold")]
        prefix: String,
        /// Keep the sessions this long after reading the RSS.
        #[arg(long, default_value_t = 0)]
        linger_secs: u64,
    },
    /// A flood from one address for SECS seconds: sockets that never log in and send frames as fast as they can.
    Flood {
        #[command(flatten)]
        target: TargetArgs,
        /// The one address the flood comes from.
        #[arg(long, default_value = "127.0.0.250")]
        source: IpAddr,
        #[arg(long, default_value_t = 1500)]
        tasks: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Mixed load for MINUTES against a fresh imlogin, a JSON line a minute (RSS, open files, latency).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
    },
    /// Kick latency: login to the displaced instance's kicked_offline.
    Kick {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 1000)]
        rounds: usize,
        /// Log the displacing login in here (another node of a cluster, so the kick crosses the bus).
        #[arg(long)]
        from: Option<SocketAddr>,
        /// Users named PREFIX-i (a run's own, so runs against one cluster do not meet).
        #[arg(long, default_value = "kick")]
        prefix: String,
    },
    /// K sessions dropped at once and resumed.
    Resume {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 5000)]
        sessions: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// Everything: baseline and imlogin in turn, medians of --repeats, JSON lines and a table.
    Suite(suite::SuiteOptions),
}

/// mimalloc: logins allocate many small, short-lived objects across threads; glibc malloc spent ~15 % of a
/// login's CPU time (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // The same process settings as imlogin's (the baseline's RSS is measured beside it).
    imlogin::app::tune_memory();
    let cli = Cli::parse();
    // Every connection is a file: take the whole hard limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let line = match cli.command {
            Cmd::Baseline { listen } => {
                let listener = imlogin::app::bind(listen)?;
                println!("listening {}", listener.local_addr()?);
                bench::baseline::serve(listener).await;
                return Ok(());
            }
            Cmd::Logins {
                target,
                count,
                concurrency,
                users,
                new,
                rate,
            } => {
                let users = new.map(Users::New).unwrap_or(Users::Known(users));
                serde_json::to_value(
                    bench::logins(&target.target(), &users, count, concurrency, rate).await,
                )?
            }
            Cmd::Hold {
                target,
                pid,
                sessions,
                concurrency,
                prefix,
                linger_secs,
            } => serde_json::to_value(
                bench::hold_lingering(
                    &target.target(),
                    pid,
                    sessions,
                    concurrency,
                    &prefix,
                    Duration::from_secs(linger_secs),
                )
                .await,
            )?,
            Cmd::Flood {
                target,
                source,
                tasks,
                secs,
            } => {
                let stop = tokio_util::sync::CancellationToken::new();
                let timer = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    timer.cancel();
                });
                serde_json::to_value(bench::flood(&target.target(), source, tasks, stop).await)?
            }
            Cmd::Kick {
                target,
                rounds,
                from,
                prefix,
            } => {
                let a = target.target();
                let b = Target {
                    addr: from.unwrap_or(a.addr),
                    ..a.clone()
                };
                serde_json::to_value(bench::kick_between(&a, &b, rounds, &prefix).await)?
            }
            Cmd::Resume {
                target,
                sessions,
                concurrency,
            } => serde_json::to_value(
                bench::resume(&target.target(), sessions, concurrency, "resume").await,
            )?,
            Cmd::Soak { minutes } => {
                suite::soak(minutes).await?;
                return Ok(());
            }
            Cmd::Suite(o) => {
                suite::run(&o).await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
                return Ok(());
            }
        };
        println!("{line}");
        Ok(())
    })
}
