//! Reading a Redis Cluster's answers for our client (`cluster.rs`): `CLUSTER SLOTS`, the key a command is
//! routed by, where a `MOVED` reply sends it, and node addresses as URLs.

use redis::{Arg, Cmd, ServerErrorKind, Value};

use super::cluster::Addr;
use crate::registry::{RegResult, RegistryError};

/// A node's URL (an IPv6 address in brackets).
pub(crate) fn node_url((host, port): &Addr) -> String {
    match host.contains(':') {
        true => format!("redis://[{host}]:{port}"),
        false => format!("redis://{host}:{port}"),
    }
}

/// The key a command's slot is of: the first key of a script call, else the first argument (the registry's
/// commands all name their key there); `None` for a command with no key.
pub(super) fn key_of(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().map(|a| match a {
        Arg::Simple(b) => b,
        _ => b"".as_slice(),
    });
    let name = args.next()?;
    // Compared in place: this runs for every command (every login's script call).
    let is = |names: &[&[u8]]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
    if is(&[b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO"]) {
        let _script = args.next()?;
        let n: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        return (n > 0).then(|| args.next()).flatten();
    }
    if is(&[b"PING", b"SCRIPT", b"CLUSTER", b"SCAN", b"INFO"]) {
        return None;
    }
    args.next()
}

/// Parses `CLUSTER SLOTS`: ranges `[first, last, [host, port, id…] of the master, replicas…]`. A master listed
/// with no host is at the node that answered (`url`).
#[allow(clippy::type_complexity)]
pub(super) fn parse_slots(
    reply: Value,
    url: &str,
) -> RegResult<(Vec<(u16, u16, Addr)>, Vec<Addr>)> {
    let fallback_host = url
        .trim_start_matches("redis://")
        .rsplit_once(':')
        .map(|(h, _)| h.rsplit('@').next().unwrap_or(h).to_owned())
        .unwrap_or_default();
    let addr = |v: &Value| -> Option<Addr> {
        let Value::Array(n) = v else { return None };
        let host = match n.first()? {
            Value::BulkString(h) if !h.is_empty() && h.as_slice() != b"?" => {
                String::from_utf8_lossy(h).into_owned()
            }
            _ => fallback_host.clone(),
        };
        let Value::Int(port) = n.get(1)? else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    };
    let rows = match reply {
        Value::Array(rows) => rows,
        // A plain Redis: "ERR This instance has cluster support disabled".
        Value::ServerError(e) => return Err(RegistryError(format!("CLUSTER SLOTS: {e}"))),
        _ => return Err(RegistryError("CLUSTER SLOTS: not an array".into())),
    };
    let (mut ranges, mut nodes) = (Vec::new(), Vec::<Addr>::new());
    for row in &rows {
        let Value::Array(r) = row else { continue };
        let (Some(Value::Int(first)), Some(Value::Int(last))) = (r.first(), r.get(1)) else {
            continue;
        };
        let Some(master) = r.get(2).and_then(addr) else {
            continue;
        };
        for n in r[2..].iter().filter_map(addr) {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        ranges.push((*first as u16, *last as u16, master));
    }
    if ranges.is_empty() {
        return Err(RegistryError("the Redis Cluster reported no slots".into()));
    }
    Ok((ranges, nodes))
}

/// Whether a reply says its slot is being moved (`TRYAGAIN`, `ASK`).
pub(super) fn migrating(v: &Value) -> bool {
    matches!(v, Value::ServerError(e)
        if matches!(e.kind(), Some(ServerErrorKind::TryAgain | ServerErrorKind::Ask)))
}

/// Where a reply says its slot is served now (`MOVED slot host:port`), if it says so.
pub(super) fn moved_to(v: &Value) -> Option<Addr> {
    let Value::ServerError(e) = v else {
        return None;
    };
    if e.kind() != Some(ServerErrorKind::Moved) {
        return None;
    }
    let (host, port) = e.details()?.split_whitespace().nth(1)?.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_routed_by_its_key() {
        let mut eval = redis::cmd("evalsha");
        eval.arg("abc").arg(2).arg("k1").arg("k2").arg("v");
        assert_eq!(key_of(&eval), Some(&b"k1"[..]));
        let mut none = redis::cmd("EVALSHA");
        none.arg("abc").arg(0).arg("v");
        assert_eq!(key_of(&none), None);
        let mut hget = redis::cmd("HGET");
        hget.arg("user").arg("f");
        assert_eq!(key_of(&hget), Some(&b"user"[..]));
        assert_eq!(key_of(redis::cmd("SCRIPT").arg("LOAD").arg("x")), None);
        assert_eq!(key_of(&redis::cmd("PING")), None);
    }

    #[test]
    fn node_urls_bracket_ipv6() {
        assert_eq!(
            node_url(&("10.0.0.1".into(), 7000)),
            "redis://10.0.0.1:7000"
        );
        assert_eq!(node_url(&("::1".into(), 7000)), "redis://[::1]:7000");
    }

    #[test]
    fn a_moved_reply_names_where_its_slot_is_served() {
        let reply = |code: &str, details: &str| {
            redis::parse_redis_value(format!("-{code} {details}\r\n").as_bytes()).unwrap()
        };
        assert_eq!(
            moved_to(&reply("MOVED", "12791 127.0.0.1:12106")),
            Some(("127.0.0.1".to_owned(), 12106))
        );
        assert_eq!(
            moved_to(&reply("MOVED", "1 ::1:7000")),
            Some(("::1".to_owned(), 7000))
        );
        assert_eq!(moved_to(&reply("ASK", "12791 127.0.0.1:12106")), None);
        assert_eq!(moved_to(&reply("MOVED", "12791")), None);
        assert_eq!(moved_to(&Value::Okay), None);
    }
}
