//! Credentials from hostile requests: any header, query and cookie text yields a token or
//! none, and any token text is verified or refused with `unauthorized`, never a panic; any
//! `Cookie` header bytes are a well-formed list of pairs or refused as malformed; any
//! `Authorization` text is a Basic pair or none.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue};
use hubbub::auth::session::{cookie_header, cookie_pairs};
use hubbub::auth::{basic_credentials, request_token, Authenticator};
use hubbub::config::Config;
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Authenticator {
    static V: OnceLock<Authenticator> = OnceLock::new();
    V.get_or_init(|| {
        let values = [("auth", "jwt"), ("jwt_secret", "fuzz secret"), ("jwt_audience", "a")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Authenticator::from_config(&Config::from_values(&values).unwrap()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (auth, proto, cookie, query) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("authorization", auth),
        ("sec-websocket-protocol", proto),
        ("cookie", cookie),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    let query: HashMap<String, String> = [("token".to_string(), query.to_string())].into();
    if let Some((token, _)) = request_token(&headers, &query, "hubbub_token") {
        if let Err(e) = verifier().verify(&token) {
            assert_eq!(e.code.as_str(), "unauthorized");
        }
    }
    // The raw bytes as a session cookie header: accepted pairs are nonempty names.
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert("cookie", v);
        match cookie_header(&h) {
            Ok(Some(joined)) => {
                let pairs = cookie_pairs(&joined).expect("an accepted header parses");
                assert!(pairs.iter().all(|(name, _)| !name.is_empty()));
            }
            Ok(None) => panic!("a Cookie header was given"),
            Err(e) => assert_eq!(e.code.as_str(), "unauthorized"),
        }
        let _ = basic_credentials(&h);
    }
    let _ = basic_credentials(&headers);
    // The raw text as a token too.
    if let Err(e) = verifier().verify(&text) {
        assert_eq!(e.code.as_str(), "unauthorized");
    }
});
