//! callpool's own signature, shared by everything that signs or checks a callpool webhook: the
//! PBX's call webhook in (`callpool.rs`), the generic callback trigger out, and the team's
//! notification webhook. `Callpool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<raw body>">`; several `v1` values while secrets rotate; a five-minute window either
//! way; constant-time comparison. docs/PROTOCOL.md has the recipe.

use std::time::Duration;

use axum::http::HeaderMap;
use callpool_pool::Ts;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::adapter::{Refusal, CLOCK_SKEW};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "callpool-signature";
/// How far a signature's timestamp may be from our clock, either way.
pub const REPLAY_WINDOW: Duration = CLOCK_SKEW;

/// The header value for `body` signed with `secret` at `t` (unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// HMAC-SHA256 of `<t>.<body>` keyed with `secret`: what `v1` carries.
fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The most `v1` values a header may carry (a PBX rotating its secret sends two).
const MAX_SIGNATURES: usize = 4;
/// The longest header read: `t=` and four `v1=` values fit in a quarter of it.
const MAX_HEADER: usize = 1024;

/// Checks `Callpool-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]` against every secret. The
/// work is bounded whatever the header holds: a long header or more than four `v1` values is
/// refused before any MAC, and each secret's MAC over the body is computed once.
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &[String], now: Ts) -> Result<(), Refusal> {
    let Some(value) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Refusal::NoSignature(
            "send the Callpool-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256>".into(),
        ));
    };
    if value.len() > MAX_HEADER {
        return Err(Refusal::BadSignature(format!("the signature header is longer than {MAX_HEADER} bytes")));
    }
    let mut t: Option<i64> = None;
    let mut given: Vec<Vec<u8>> = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => given.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    if given.len() > MAX_SIGNATURES {
        return Err(Refusal::BadSignature(format!("the signature has more than {MAX_SIGNATURES} v1 values")));
    }
    let Some(t) = t else { return Err(Refusal::BadSignature("the signature has no valid t=<unix seconds>".into())) };
    if given.is_empty() {
        return Err(Refusal::BadSignature("the signature has no valid v1=<hex>".into()));
    }
    let age = now.as_millis().div_euclid(1000).abs_diff(t);
    if age > REPLAY_WINDOW.as_secs() {
        return Err(Refusal::StaleTimestamp("the signature's timestamp is more than 5 minutes from our clock".into()));
    }
    for secret in secrets {
        let expected = mac(secret, t, body).finalize().into_bytes();
        // Compared in constant time.
        if given.iter().any(|sig| bool::from(expected.as_slice().ct_eq(sig.as_slice()))) {
            return Ok(());
        }
    }
    Err(Refusal::BadSignature("the signature does not match the body".into()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const NOW: Ts = Ts::from_millis(1_800_000_000_000);
    const SECRET: &str = "0123456789abcdef-secret";

    fn headers(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn signatures_are_checked_with_a_replay_window() {
        let body = br#"{"call_id":"1"}"#;
        let t = NOW.as_millis() / 1000;
        let secrets = vec!["old-secret-0123456789".to_owned(), SECRET.to_owned()];
        assert_eq!(verify(&headers(&sign(SECRET, t, body)), body, &secrets, NOW), Ok(()));
        // Rotation: a header with two v1 values, one of them from a retired secret.
        let current = sign(SECRET, t, body);
        let two =
            format!("{},v1={}", sign("retired-secret-0123456789", t, body), current.split_once(",v1=").unwrap().1);
        assert_eq!(verify(&headers(&two), body, &secrets, NOW), Ok(()));
        let reason = |h: HeaderMap, b: &[u8]| verify(&h, b, &secrets, NOW).unwrap_err().reason();
        assert_eq!(reason(headers(&sign(SECRET, t, body)), br#"{"call_id":"2"}"#), "bad_signature");
        assert_eq!(reason(headers(&sign("wrong-secret-0123456789", t, body)), body), "bad_signature");
        assert_eq!(reason(headers(&sign(SECRET, t - 301, body)), body), "stale_timestamp");
        assert_eq!(reason(headers(&sign(SECRET, t + 301, body)), body), "stale_timestamp");
        assert_eq!(verify(&headers(&sign(SECRET, t - 300, body)), body, &secrets, NOW), Ok(()));
        assert_eq!(reason(HeaderMap::new(), body), "no_signature");
        assert_eq!(reason(headers("t=abc,v1=00"), body), "bad_signature");
        assert_eq!(reason(headers(&format!("t={t}")), body), "bad_signature");
        // Work bounded by the header: many values, or a long header, are refused unread.
        let v1 = current.split_once(",v1=").unwrap().1;
        let five = format!("t={t}{}", format!(",v1={v1}").repeat(5));
        assert_eq!(reason(headers(&five), body), "bad_signature");
        let four = format!("t={t}{}", format!(",v1={}", "00".repeat(32)).repeat(3)) + &format!(",v1={v1}");
        assert_eq!(verify(&headers(&four), body, &secrets, NOW), Ok(()), "four values, the last one right");
        let long = format!("t={t},v1={v1},x={}", "a".repeat(1100));
        assert_eq!(reason(headers(&long), body), "bad_signature");
    }
}
