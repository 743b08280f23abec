//! Credentials from hostile requests: any header, query and cookie text yields a token or
//! none, and any token text is verified or refused with `unauthorized`, never a panic.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue};
use hubbub::auth::{request_token, Authenticator};
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
    // The raw text as a token too.
    if let Err(e) = verifier().verify(&text) {
        assert_eq!(e.code.as_str(), "unauthorized");
    }
});
