// Shared by the fuzz target (fuzz/fuzz_targets/v4_rest.rs) and the replay of the seeds on stable
// (tests/api/fuzz_seeds.rs): `run` must not panic, hang or exhaust memory for any input.
//
// The v4 REST API's query and body parsers, through the real router of a server on an in-memory SQLite: every
// input must be answered HTTP 200 with the v4 envelope (`ActionStatus`, `ErrorCode`), never a panic.
//
// Input: a byte choosing the command, a byte whose low bit puts a valid admin query in front of the fuzzer's
// (the body parsers are behind it), then the query, a NUL, and the body.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use imlogin::app::{router, Application};
use imlogin::config::Settings;
use imlogin::http::serve::ClientIp;
use imlogin::runtime::clock::Clock;
use imlogin::store::Database;
use imlogin::usersig::tls;
use tower::ServiceExt;

const APP: u32 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const COMMANDS: &[&str] = &[
    "im_open_login_svc/account_import",
    "im_open_login_svc/multiaccount_import",
    "im_open_login_svc/account_delete",
    "im_open_login_svc/account_check",
    "im_open_login_svc/kick",
    "openim/query_online_status",
    "openim/unknown",
];

struct Server {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    admin_query: String,
    _app: Application,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut env: Vec<(String, String)> = [
            ("SERVER__LISTEN", "127.0.0.1:0"),
            ("SERVER__METRICS_ENABLED", "false"),
            ("DATABASE__URL", "sqlite::memory:"),
            // The limits would answer 60007 / 70050 to most inputs and hide the parsers behind them.
            ("LIMITS__LOGIN_FAILURES_PER_MINUTE", "1000000000"),
        ]
        .iter()
        .map(|(k, v)| (format!("IMLOGIN__{k}"), v.to_string()))
        .collect();
        for cmd in [
            "ACCOUNT_IMPORT",
            "MULTIACCOUNT_IMPORT",
            "ACCOUNT_DELETE",
            "ACCOUNT_CHECK",
            "KICK",
            "QUERY_ONLINE_STATUS",
        ] {
            env.push((
                format!("IMLOGIN__APPS__0__REST_LIMITS__{cmd}"),
                "1000000000".into(),
            ));
        }
        let settings = Settings::load_with_env(None, env).unwrap();
        let app = rt.block_on(async {
            let db = Database::open("sqlite::memory:", 1).await.unwrap();
            Application::build_with(settings, db, Clock::system())
                .await
                .unwrap()
        });
        let router = router(app.state().clone());
        let now = Clock::system().now_secs() as u64;
        let sig = tls::generate(APP, KEY, "administrator", 86_400 * 365, now);
        let admin_query = format!(
            "sdkappid={APP}&identifier=administrator&usersig={sig}&random=7&contenttype=json"
        );
        Server {
            rt,
            router,
            admin_query,
            _app: app,
        }
    })
}

pub fn run(data: &[u8]) {
    let [command, authenticated, rest @ ..] = data else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (&rest[..0], rest),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let s = server();
    let command = COMMANDS[*command as usize % COMMANDS.len()];
    let query = if authenticated & 1 == 1 {
        format!("{}&{query}", s.admin_query)
    } else {
        query.to_owned()
    };
    // What hyper would refuse before routing never reaches the handler.
    let Ok(mut request) =
        Request::post(format!("/v4/{command}?{query}")).body(Body::from(body.to_vec()))
    else {
        return;
    };
    request
        .extensions_mut()
        .insert(ClientIp(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let (status, body) = s.rt.block_on(async {
        let response = s.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    });
    assert_eq!(
        status,
        StatusCode::OK,
        "v4 answers 200: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON envelope");
    assert!(
        v["ActionStatus"].is_string() && v["ErrorCode"].is_u64(),
        "{v}"
    );
}
