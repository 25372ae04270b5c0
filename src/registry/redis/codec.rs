//! How the registry's values are written in Redis and read back: numbers in hexadecimal, an instance as one
//! `|`-separated value, kick records, script arguments written straight into the command, and the replies of
//! the scripts.

use std::net::IpAddr;

use redis::Value;

use super::super::{RegResult, RegistryError};
use crate::model::{ConnRef, Instance, InstanceKey, Kick, KickReason, Platform, Seq, UserId};

/// A number in hexadecimal, as the scripts store them (short, and C-fast for Lua's `string.format`).
pub(super) fn hex(n: u64) -> String {
    format!("{n:x}")
}

pub(super) fn from_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// A time (never negative here) in hexadecimal.
pub(super) fn hexi(n: i64) -> String {
    hex(n.max(0) as u64)
}

/// A number as a script argument in hexadecimal, written straight into the command (no string of its own).
pub(super) struct Hex(pub(super) u64);

impl redis::ToRedisArgs for Hex {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{:x}", self.0));
    }
}

/// A time (never negative here) in hexadecimal, as an argument.
pub(super) fn hex_arg(n: i64) -> Hex {
    Hex(n.max(0) as u64)
}

/// The floor of a change number made at `now_ms` (see [`super::next_seq`]), as an argument: the scripts take it
/// formatted, so most changes format no number in Lua.
pub(super) fn floor_arg(now_ms: i64) -> Hex {
    Hex(crate::model::next_seq(0, now_ms))
}

/// `APP:USER`, a user's member of the index of when users are due (`NS:due`), as an argument.
pub(super) struct Member<'a>(pub(super) &'a InstanceKey);

impl redis::ToRedisArgs for Member<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{}:{}", self.0.sdkappid, self.0.user_id));
    }
}

/// A user's key, `NS:u:APP:USER`, as an argument.
pub(super) struct UserKey<'a>(pub(super) &'a str, pub(super) u32, pub(super) &'a str);

impl redis::ToRedisArgs for UserKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!("{}:u:{}:{}", self.0, self.1, self.2));
    }
}

/// A user's instances, as read.
pub(super) struct UserState {
    pub(super) instances: Vec<Instance>,
}

/// The stored form of an instance, split where its login order goes (the admit script numbers it).
pub(super) fn encode_parts(i: &Instance) -> (String, String) {
    let (node, conn) = match i.conn {
        Some(c) => (hex(c.node), hex(c.conn)),
        None => (String::new(), String::new()),
    };
    let disc = match (i.conn, i.disconnected_at_ms) {
        (None, Some(t)) => hexi(t),
        _ => String::new(),
    };
    (
        format!("{}|{}|", i.platform.index(), hexi(i.login_at_ms)),
        format!(
            "|{}|{node}|{conn}|{disc}|{}|{}",
            hexi(i.sig_expires_at),
            i.ip,
            i.device_id.as_deref().unwrap_or("")
        ),
    )
}

/// An instance from its stored form.
pub(super) fn decode(sdkappid: u32, user_id: &str, instance_id: &str, v: &str) -> Option<Instance> {
    let mut f = v.splitn(9, '|');
    let mut next = || f.next();
    let platform = *Platform::ALL.get(next()?.parse::<usize>().ok()?)?;
    let login_at_ms = from_hex(next()?)? as i64;
    let seq = from_hex(next()?)?;
    let sig_expires_at = from_hex(next()?)? as i64;
    let (node, conn) = (next()?, next()?);
    let conn = match node {
        "" => None,
        n => Some(ConnRef {
            node: from_hex(n)?,
            conn: from_hex(conn)?,
        }),
    };
    let disconnected_at_ms = match next()? {
        "" => None,
        t => Some(from_hex(t)? as i64),
    };
    let ip: IpAddr = next()?.parse().ok()?;
    let device_id = match next()? {
        "" => None,
        d => Some(d.to_owned()),
    };
    Some(Instance {
        sdkappid,
        user_id: UserId::stored(user_id),
        platform,
        instance_id: instance_id.to_owned(),
        device_id,
        login_at_ms,
        seq,
        sig_expires_at,
        conn,
        disconnected_at_ms,
        ip,
    })
}

pub(super) fn user_state(sdkappid: u32, user_id: &str, fields: Vec<(String, String)>) -> UserState {
    let mut instances = Vec::new();
    for (field, value) in fields {
        if let Some(id) = field.strip_prefix("i:") {
            match decode(sdkappid, user_id, id, &value) {
                Some(i) => instances.push(i),
                None => tracing::warn!(
                    sdkappid,
                    "registry: an instance that does not parse is ignored"
                ),
            }
        }
    }
    instances.sort_by_key(|i| i.seq);
    UserState { instances }
}

/// Why instance `id` was kicked, and until when that is remembered, from a user's kick records (`k`:
/// `ID,reason,until[,by];` each, the newest last). `by`, the kicker's platform, is only in records of policy
/// kicks, and not in those an earlier version wrote: a record without it (or with one this version does not
/// know) reads as a kick by no known platform; an earlier version reading a record with it ignores the field.
pub(super) fn find_kick(records: &str, id: &str) -> Option<(Kick, i64)> {
    records.split(';').rev().find_map(|r| {
        let mut f = r.split(',');
        if f.next()? != id {
            return None;
        }
        let reason = KickReason::from_index(f.next()?.parse().ok()?)?;
        let until = from_hex(f.next()?)? as i64;
        let by = f
            .next()
            .and_then(|p| p.parse::<usize>().ok())
            .and_then(|p| Platform::ALL.get(p).copied());
        Some((Kick { reason, by }, until))
    })
}

/// `reason,until;` as the scripts store a kick by the server (after the instance's id; no kicker's platform).
pub(super) fn kick_record(reason: KickReason, until_ms: i64) -> String {
    format!("{},{};", reason.index(), hexi(until_ms))
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

pub(super) fn malformed() -> RegistryError {
    RegistryError("unexpected reply from a registry script".into())
}

/// An instance from a script's row `{app, user, id, value, …}`.
pub(super) fn stored(r: &[Value]) -> Option<Instance> {
    let app = u32::try_from(int(r.first()?)?).ok()?;
    decode(app, &text(r.get(1)?)?, &text(r.get(2)?)?, &text(r.get(3)?)?)
}

/// `{0}` or `{1, value, s}` from the remove and detach scripts.
pub(super) fn changed(key: &InstanceKey, v: &Value) -> RegResult<Option<(Instance, Seq)>> {
    let r = items(v);
    if r.first().and_then(int) != Some(1) {
        return Ok(None);
    }
    let value = r.get(1).and_then(text).ok_or_else(malformed)?;
    let seq = r.get(2).and_then(seq_of).ok_or_else(malformed)?;
    let inst =
        decode(key.sdkappid, &key.user_id, &key.instance_id, &value).ok_or_else(malformed)?;
    Ok(Some((inst, seq)))
}

/// A change number as a script returns it: a Lua number, or hexadecimal text (the scripts that pass it on as
/// they got it, formatted).
pub(super) fn seq_of(v: &Value) -> Option<Seq> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        v => hex_int(v),
    }
}

/// A number a script returns in hexadecimal.
pub(super) fn hex_int(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => from_hex(std::str::from_utf8(b).ok()?),
        _ => None,
    }
}
