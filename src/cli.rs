//! The `imlogin` command line (PROTOCOL §10): `serve`, `gen-usersig`, `verify-usersig`, `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::model::error::{Code, Failure};
use crate::model::UserId;
use crate::runtime::clock::unix_now;
use crate::usersig::jwt::{JwtAlgorithm, JwtVerifier};
use crate::usersig::tls::{self, DEFAULT_EXPIRE};
use crate::usersig::{Keys, Ticket};

#[derive(Debug, Parser)]
#[command(
    name = "imlogin",
    version,
    about = "Self-hosted IM login server: UserSig login, sessions, admin API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (defaults, then --config FILE, then IMLOGIN__SECTION__KEY env vars).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a TLS sig v2 UserSig, byte for byte as the official generators print it.
    GenUsersig {
        #[arg(long)]
        sdkappid: u32,
        /// The app's secret key (used as UTF-8 bytes, as the official generators do).
        #[arg(long, env = "IMLOGIN_SECRET_KEY", hide_env_values = true)]
        key: String,
        #[arg(long)]
        user: String,
        /// Validity in seconds from --time.
        #[arg(long, default_value_t = DEFAULT_EXPIRE)]
        expire: u64,
        /// Generation time (unix seconds); default now.
        #[arg(long)]
        time: Option<u64>,
    },
    /// Check a UserSig (TLS sig v2, or an HS256/384/512 JWT signed with --key) and explain what was found.
    VerifyUsersig {
        #[arg(long)]
        sdkappid: u32,
        #[arg(long, env = "IMLOGIN_SECRET_KEY", hide_env_values = true)]
        key: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        usersig: String,
        /// Check as of this unix time; default now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Load the config (with env overrides), validate it and print it with secrets masked.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Runs a subcommand other than `serve` (which needs the runtime; see `main.rs`).
pub fn run_offline(command: Command) -> ExitCode {
    match command {
        Command::Serve { .. } => unreachable!("serve is run by main"),
        Command::GenUsersig {
            sdkappid,
            key,
            user,
            expire,
            time,
        } => {
            if let Err(e) = UserId::parse(&user) {
                eprintln!("error: {}", Code::from(e));
                return ExitCode::from(2);
            }
            let time = time.unwrap_or_else(|| unix_now() as u64);
            println!("{}", tls::generate(sdkappid, &key, &user, expire, time));
            ExitCode::SUCCESS
        }
        Command::VerifyUsersig {
            sdkappid,
            key,
            user,
            usersig,
            now,
        } => verify(sdkappid, key, &user, &usersig, now),
        Command::CheckConfig { config } => match Settings::load(config.as_deref()) {
            Ok(settings) => {
                print!("{}", settings.masked_toml());
                for public in settings.public_secrets() {
                    eprintln!(
                        "warning: `{}` is the public example value of {}: for trying only, replace it",
                        public.key, public.from
                    );
                }
                eprintln!("config OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("config error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn verify(sdkappid: u32, key: String, user: &str, usersig: &str, now: Option<i64>) -> ExitCode {
    let now = now.unwrap_or_else(unix_now);
    let ticket = Ticket::decode(usersig);
    match &ticket {
        Ok(Ticket::Tls(t)) => {
            println!("format:     TLS sig v2 (HMAC-SHA256)");
            println!("identifier: {}", t.identifier);
            println!("sdkappid:   {}", t.sdkappid);
            println!("time:       {}", t.time);
            println!("expire:     {} s", t.expire);
            println!("expires at: {}", t.time.saturating_add(t.expire));
        }
        Ok(Ticket::Jwt(_)) => println!("format:     JWT (checked as HS256/HS384/HS512 with --key)"),
        Err(_) => {}
    }
    // The key signs TLS sig v2 tickets, and HMAC JWTs when it is long enough to be a JWT secret.
    let hmac_jwt = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
    ];
    let jwt = JwtVerifier::new(&hmac_jwt, Some(&key), None, None).ok();
    let keys = Keys::new(&key, jwt);
    // As a login would: a UserID that is not one is refused (7003) before any ticket is checked.
    let user_id = UserId::parse(user).map_err(|e| Failure::from(Code::from(e)));
    match user_id
        .and(ticket)
        .and_then(|t| t.verify(&keys, sdkappid, user, now))
    {
        Ok(v) => {
            println!(
                "result:     valid (code 0) as of {now}; expires at {}",
                v.expires_at
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!(
                "result:     INVALID, code {}: {}",
                f.code.number(),
                f.message
            );
            ExitCode::from(1)
        }
    }
}
