//! TLS sig v2 (REFERENCE §1): HMAC-SHA256 over four lines, JSON, zlib, base64 with `+/=` → `*-_`.

use std::io::Write;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::Verified;
use crate::model::error::{Code, Failure};

type HmacSha256 = Hmac<Sha256>;

/// Standard alphabet; decoding accepts padded and unpadded input (Node pads, PHP is lenient, some clients strip).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const STANDARD: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A UserSig inflates to a JSON document of a few hundred bytes; more is not a ticket (and guards against
/// decompression bombs).
const MAX_INFLATED: u64 = 8 * 1024;

/// The SDK default validity: 180 days.
pub const DEFAULT_EXPIRE: u64 = 180 * 86400;

/// A decoded TLS sig v2 ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsTicket {
    pub identifier: String,
    pub sdkappid: u64,
    pub time: u64,
    pub expire: u64,
    pub sig: Vec<u8>,
}

fn bad(why: &str) -> Failure {
    Failure::with_message(
        Code::UserSigCheckFailed,
        format!("UserSig could not be parsed: {why}"),
    )
}

impl TlsTicket {
    /// Undoes the base64 substitution, inflates and parses (70003 on any failure, and for userbuf tickets).
    pub fn decode(usersig: &str) -> Result<TlsTicket, Failure> {
        let std_b64: String = usersig
            .chars()
            .map(|c| match c {
                '*' => '+',
                '-' => '/',
                '_' => '=',
                c => c,
            })
            .collect();
        let compressed = LENIENT
            .decode(std_b64.trim_end_matches('='))
            .map_err(|_| bad("not base64"))?;
        let json = inflate(&compressed)?;
        let doc: Map<String, Value> =
            serde_json::from_slice(&json).map_err(|_| bad("not a JSON object"))?;
        if doc.contains_key("TLS.userbuf") {
            return Err(Failure::with_message(
                Code::UserSigCheckFailed,
                "UserSig carries TLS.userbuf (a TRTC PrivateMapKey ticket); it cannot be used to log in",
            ));
        }
        let identifier = match doc.get("TLS.identifier") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad("TLS.identifier missing or not a string")),
        };
        let number = |key: &str, required: bool| -> Result<u64, Failure> {
            match doc.get(key) {
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| bad(&format!("{key} is not a non-negative integer"))),
                // The Go generator omits zero values (`omitempty`).
                None if !required => Ok(0),
                None => Err(bad(&format!("{key} missing"))),
            }
        };
        let sdkappid = number("TLS.sdkappid", true)?;
        let time = number("TLS.time", false)?;
        let expire = number("TLS.expire", false)?;
        let sig = match doc.get("TLS.sig") {
            Some(Value::String(s)) => STANDARD
                .decode(s.trim())
                .map_err(|_| bad("TLS.sig is not base64"))?,
            _ => return Err(bad("TLS.sig missing or not a string")),
        };
        Ok(TlsTicket {
            identifier,
            sdkappid,
            time,
            expire,
            sig,
        })
    }

    /// Checks app, user, signature (constant time, against each of `keys`: the current key, then a previous
    /// one during a rotation) and expiry, in that order.
    pub fn verify(
        &self,
        sdkappid: u32,
        user_id: &str,
        keys: &[&[u8]],
        now: i64,
    ) -> Result<Verified, Failure> {
        if self.sdkappid != u64::from(sdkappid) {
            return Err(Code::UserSigMismatchSdkAppId.into());
        }
        if self.identifier != user_id {
            return Err(Code::UserSigMismatchId.into());
        }
        // `verify_slice` compares in constant time.
        let signed = keys.iter().any(|key| {
            mac_for(key, &self.identifier, self.sdkappid, self.time, self.expire)
                .verify_slice(&self.sig)
                .is_ok()
        });
        if !signed {
            return Err(Code::UserSigMismatchKey.into());
        }
        let expires_at = self.time.saturating_add(self.expire).min(i64::MAX as u64) as i64;
        if now > expires_at {
            return Err(Failure::with_message(
                Code::UserSigExpired,
                format!("UserSig expired at {expires_at} (unix seconds); generate a new one"),
            ));
        }
        Ok(Verified {
            issued_at: self.time.min(i64::MAX as u64) as i64,
            expires_at,
        })
    }
}

thread_local! {
    /// One zlib inflater per thread, reset for each ticket: creating one allocates ~40 KiB (state and window),
    /// which was a visible share of a login's cost.
    static INFLATER: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(true));
}

/// Inflates a zlib stream of at most [`MAX_INFLATED`] bytes.
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, Failure> {
    INFLATER.with(|cell| {
        let mut z = cell.borrow_mut();
        z.reset(true);
        let mut out = Vec::with_capacity(512);
        loop {
            let before_in = z.total_in() as usize;
            if out.len() == out.capacity() {
                if out.len() as u64 >= MAX_INFLATED {
                    return Err(bad("too large"));
                }
                out.reserve(out.len().max(512));
            }
            let status = z
                .decompress_vec(&compressed[before_in..], &mut out, FlushDecompress::Finish)
                .map_err(|_| bad("not a zlib stream"))?;
            match status {
                Status::StreamEnd => return Ok(out),
                // No progress possible: the input ended before the stream did.
                _ if z.total_in() as usize == compressed.len() && out.len() < out.capacity() => {
                    return Err(bad("truncated zlib stream"))
                }
                _ => {}
            }
        }
    })
}

fn content(identifier: &str, sdkappid: u64, time: u64, expire: u64) -> String {
    format!("TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n")
}

fn mac_for(key: &[u8], identifier: &str, sdkappid: u64, time: u64, expire: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(content(identifier, sdkappid, time, expire).as_bytes());
    mac
}

/// Generates a ticket byte for byte as the official Python generator does (same JSON layout, zlib level 6).
pub fn generate(sdkappid: u32, key: &str, identifier: &str, expire: u64, time: u64) -> String {
    generate_inner(sdkappid, key, identifier, expire, time, None)
}

/// The userbuf (TRTC PrivateMapKey) variant; imlogin refuses such tickets for login, but tests need them.
pub fn generate_with_userbuf(
    sdkappid: u32,
    key: &str,
    identifier: &str,
    expire: u64,
    time: u64,
    userbuf: &[u8],
) -> String {
    generate_inner(sdkappid, key, identifier, expire, time, Some(userbuf))
}

fn generate_inner(
    sdkappid: u32,
    key: &str,
    identifier: &str,
    expire: u64,
    time: u64,
    userbuf: Option<&[u8]>,
) -> String {
    let mut mac = mac_for(key.as_bytes(), identifier, sdkappid.into(), time, expire);
    let userbuf_b64 = userbuf.map(|b| STANDARD.encode(b));
    if let Some(ub) = &userbuf_b64 {
        mac.update(format!("TLS.userbuf:{ub}\n").as_bytes());
    }
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    // Python's json.dumps layout: ", " and ": " separators, keys in insertion order, non-ASCII as \uXXXX.
    let mut json = format!(
        "{{\"TLS.ver\": \"2.0\", \"TLS.identifier\": {}, \"TLS.sdkappid\": {sdkappid}, \"TLS.expire\": {expire}, \"TLS.time\": {time}",
        python_json_string(identifier)
    );
    if let Some(ub) = &userbuf_b64 {
        json.push_str(&format!(", \"TLS.userbuf\": \"{ub}\""));
    }
    json.push_str(&format!(", \"TLS.sig\": \"{sig}\"}}"));
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(json.as_bytes())
        .expect("writing to a Vec cannot fail");
    let compressed = enc.finish().expect("writing to a Vec cannot fail");
    STANDARD
        .encode(compressed)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

/// A JSON string as Python's `json.dumps` (ensure_ascii) writes it.
fn python_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    const APP: u32 = 1_400_000_000;
    const T: u64 = 1_700_000_000;
    const EXP: u64 = 15_552_000;
    const PY_TICKET: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";
    const CPP_TICKET: &str = "eAGrVgrxCdYrSy1SslIy0jNQ0gHzi1OyEwsKMlOUrAxNDKAAIpOZkppXkpmWCdZQkZmYn1WaB9VUkpmbCtRgjqohtaIgswgkbmpqagSUglqQmQ600KfM0TxF37PcPD24OK84uyysysklwN-Z2SWp1M*53MTdozzE2SAps0DbycRWqRYAcDcx8g__";
    const USERBUF_TICKET: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPWlxalFSaVpIFsiw72y4FZkpoOEArNCjAwMKwKyI7L1E30NU7UrDcoSs6OSDLyNMgOK3EpTtbUNik0rzZLcfG2VagHdkjl6";

    fn encode_outer(zlib_bytes: &[u8]) -> String {
        STANDARD
            .encode(zlib_bytes)
            .replace('+', "*")
            .replace('/', "-")
            .replace('=', "_")
    }

    fn zlib(json: &str, level: u32) -> Vec<u8> {
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(level));
        enc.write_all(json.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn worked_example_hmac_and_sig() {
        let mac = mac_for(KEY.as_bytes(), "xiaojun", APP.into(), T, EXP)
            .finalize()
            .into_bytes();
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2ef03b77f230ee04ac9ec92f5730433ce0820dbb8d0b0e061f04c2d1b8a9f81e"
        );
        assert_eq!(
            STANDARD.encode(mac),
            "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
        );
    }

    #[test]
    fn generation_matches_python_byte_for_byte() {
        assert_eq!(generate(APP, KEY, "xiaojun", EXP, T), PY_TICKET);
        assert_eq!(
            generate_with_userbuf(APP, KEY, "xiaojun", EXP, T, b"abc"),
            USERBUF_TICKET
        );
    }

    #[test]
    fn python_and_cpp_tickets_verify() {
        for ticket in [PY_TICKET, CPP_TICKET] {
            let t = TlsTicket::decode(ticket).unwrap();
            assert_eq!(t.identifier, "xiaojun");
            let v = t
                .verify(APP, "xiaojun", &[KEY.as_bytes()], T as i64)
                .unwrap();
            assert_eq!(
                v,
                Verified {
                    issued_at: T as i64,
                    expires_at: (T + EXP) as i64
                }
            );
        }
    }

    #[test]
    fn expiry_boundary_is_inclusive() {
        let t = TlsTicket::decode(PY_TICKET).unwrap();
        assert!(t
            .verify(APP, "xiaojun", &[KEY.as_bytes()], (T + EXP) as i64)
            .is_ok());
        let err = t
            .verify(APP, "xiaojun", &[KEY.as_bytes()], (T + EXP + 1) as i64)
            .unwrap_err();
        assert_eq!(err.code, Code::UserSigExpired);
    }

    #[test]
    fn userbuf_ticket_is_refused() {
        assert_eq!(
            TlsTicket::decode(USERBUF_TICKET).unwrap_err().code,
            Code::UserSigCheckFailed
        );
    }

    #[test]
    fn any_level_key_order_spacing_and_missing_padding() {
        let sig = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=";
        let layouts = [
            format!(r#"{{"TLS.sig":"{sig}","TLS.time":1700000000,"TLS.expire":15552000,"TLS.sdkappid":1400000000,"TLS.identifier":"xiaojun","TLS.ver":"2.0"}}"#),
            format!("{{\n  \"TLS.ver\" : \"2.0\",\n\t\"TLS.identifier\":\"xiao\\u006aun\" , \"TLS.sdkappid\":1400000000,\"TLS.expire\":15552000,\"TLS.time\":1700000000,\"TLS.sig\":\"{sig}\"}}\n"),
        ];
        for json in &layouts {
            for level in [0, 1, 6, 9] {
                let ticket = encode_outer(&zlib(json, level));
                for candidate in [ticket.clone(), ticket.trim_end_matches('_').to_owned()] {
                    let t = TlsTicket::decode(&candidate)
                        .unwrap_or_else(|e| panic!("{json} level {level}: {e}"));
                    assert!(t
                        .verify(APP, "xiaojun", &[KEY.as_bytes()], T as i64)
                        .is_ok());
                }
            }
        }
    }

    #[test]
    fn go_style_omitted_zero_expire_is_zero() {
        // expire = 0 is omitted by the Go generator: valid only at `time` itself.
        let mac = STANDARD.encode(
            mac_for(KEY.as_bytes(), "u", APP.into(), T, 0)
                .finalize()
                .into_bytes(),
        );
        let json = format!(
            r#"{{"TLS.ver":"2.0","TLS.identifier":"u","TLS.sdkappid":1400000000,"TLS.time":1700000000,"TLS.sig":"{mac}"}}"#
        );
        let t = TlsTicket::decode(&encode_outer(&zlib(&json, 0))).unwrap();
        assert_eq!(t.expire, 0);
        assert!(t.verify(APP, "u", &[KEY.as_bytes()], T as i64).is_ok());
        assert_eq!(
            t.verify(APP, "u", &[KEY.as_bytes()], T as i64 + 1)
                .unwrap_err()
                .code,
            Code::UserSigExpired
        );
    }

    #[test]
    fn mismatches_in_order() {
        let t = TlsTicket::decode(PY_TICKET).unwrap();
        let now = T as i64;
        assert_eq!(
            t.verify(APP + 1, "other", &[b"k"], now + EXP as i64 * 2)
                .unwrap_err()
                .code,
            Code::UserSigMismatchSdkAppId
        );
        assert_eq!(
            t.verify(APP, "other", &[b"k"], now + EXP as i64 * 2)
                .unwrap_err()
                .code,
            Code::UserSigMismatchId
        );
        assert_eq!(
            t.verify(APP, "xiaojun", &[b"wrong-key"], now + EXP as i64 * 2)
                .unwrap_err()
                .code,
            Code::UserSigMismatchKey
        );
        assert_eq!(
            t.verify(APP, "XiaoJun", &[KEY.as_bytes()], now)
                .unwrap_err()
                .code,
            Code::UserSigMismatchId
        );
    }

    #[test]
    fn garbage_is_70003() {
        for s in [
            "!!!!",
            "eJyr",
            "YWJj",
            &encode_outer(&zlib("[1,2]", 6)),
            &encode_outer(&zlib("{}", 6)),
            &encode_outer(&zlib(
                r#"{"TLS.identifier":"a","TLS.sdkappid":"1","TLS.sig":"AA=="}"#,
                6,
            )),
            &encode_outer(&zlib(
                r#"{"TLS.identifier":"a","TLS.sdkappid":1,"TLS.sig":"%%"}"#,
                6,
            )),
            &encode_outer(&zlib(&" ".repeat(100_000), 9)),
        ] {
            assert_eq!(
                TlsTicket::decode(s).unwrap_err().code,
                Code::UserSigCheckFailed,
                "{s}"
            );
        }
    }

    #[test]
    fn forged_signature_is_70009() {
        let forged = r#"{"TLS.ver":"2.0","TLS.identifier":"xiaojun","TLS.sdkappid":1400000000,"TLS.expire":99999999999,"TLS.time":1700000000,"TLS.sig":"LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="}"#;
        let t = TlsTicket::decode(&encode_outer(&zlib(forged, 6))).unwrap();
        assert_eq!(
            t.verify(APP, "xiaojun", &[KEY.as_bytes()], T as i64)
                .unwrap_err()
                .code,
            Code::UserSigMismatchKey
        );
    }

    #[test]
    fn non_ascii_identifiers_escape_like_python() {
        assert_eq!(python_json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(python_json_string("é😀"), r#""\u00e9\ud83d\ude00""#);
        let ticket = generate(APP, KEY, "é😀", EXP, T);
        let t = TlsTicket::decode(&ticket).unwrap();
        assert!(t.verify(APP, "é😀", &[KEY.as_bytes()], T as i64).is_ok());
    }
}
