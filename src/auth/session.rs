//! Mode `cookie`: the application's own session cookie, checked by the application (the
//! BFF pattern). Hubbub forwards the client's `Cookie` header to `auth_callback` and takes
//! the user from the answer; answers are reused for `auth_cache`, so a reconnect storm
//! does not become a storm of callback requests.
//!
//! The callback contract (docs/security.md): `GET <auth_callback>` with the client's
//! `Cookie`, `Accept: application/json` and `X-Forwarded-For`. `200` with a JSON object
//! naming `user` (or `sub`) admits the connection; the object's other members are claims
//! like a JWT's (`rooms`, `broadcast`, `single_session`, `exp` in seconds). `401`, `403` or a
//! redirect (to a login page) refuse it. Anything else, a timeout or an unreachable
//! application refuses it too (fail closed), as a server-side failure, and is logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::config::Config;
use crate::error::{ErrorCode, HubError};

/// Cached answers at most; past it, expired ones go first, then all.
const CACHE_MAX: usize = 10_000;
/// Largest callback answer read.
const ANSWER_MAX: usize = 64 << 10;

/// Checks session cookies against the application's callback.
#[derive(Debug)]
pub struct CookieVerifier {
    url: reqwest::Url,
    client: reqwest::Client,
    ttl: Duration,
    /// SHA-256 of the `Cookie` header -> the answer and when it was given.
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl CookieVerifier {
    /// Reads `auth_callback` and the timeouts; refuses a URL that is not http(s).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let raw = config
            .auth_callback
            .as_deref()
            .ok_or("auth `cookie` needs `auth_callback`, the URL that checks a session")?;
        let url = reqwest::Url::parse(raw).map_err(|e| format!("auth_callback `{raw}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("auth_callback `{raw}`: must be http or https"));
        }
        let client = reqwest::Client::builder()
            .timeout(config.auth_callback_timeout)
            .connect_timeout(config.auth_callback_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("hubbub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("auth_callback client: {e}"))?;
        Ok(Self {
            url,
            client,
            ttl: config.auth_cache,
            cache: Mutex::default(),
        })
    }

    /// Who the request's session cookie belongs to: `Ok(None)` when it has no cookie.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Principal>, HubError> {
        match cookie_header(headers)? {
            None => Ok(None),
            Some(cookies) => self.verify(&cookies, peer).await.map(Some),
        }
    }

    /// Asks the callback (or the cache) who `cookies`, a whole `Cookie` header, names.
    pub async fn verify(&self, cookies: &str, peer: Option<IpAddr>) -> Result<Principal, HubError> {
        let key: [u8; 32] = Sha256::digest(cookies.as_bytes()).into();
        let now = Instant::now();
        if let Some(p) = self.cached(&key, now) {
            return Ok(p);
        }
        let principal = self.ask(cookies, peer).await?;
        if !self.ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                let ttl = self.ttl;
                cache.retain(|_, (_, at)| now.duration_since(*at) < ttl);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (principal.clone(), now));
        }
        Ok(principal)
    }

    fn cached(&self, key: &[u8; 32], now: Instant) -> Option<Principal> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (p, at) = cache.get(key)?;
        let expired = p
            .expires_at_ms
            .is_some_and(|exp| exp <= crate::hub::now_ms());
        if now.duration_since(*at) >= self.ttl || expired {
            cache.remove(key);
            return None;
        }
        Some(p.clone())
    }

    async fn ask(&self, cookies: &str, peer: Option<IpAddr>) -> Result<Principal, HubError> {
        let unavailable = |why: String| {
            tracing::warn!("auth callback {}: {why}", self.url);
            HubError::new(
                ErrorCode::Internal,
                "the session check is unavailable; retry later",
            )
        };
        let mut request = self
            .client
            .get(self.url.clone())
            .header(header::COOKIE, cookies)
            .header(header::ACCEPT, "application/json");
        if let Some(ip) = peer {
            request = request.header("x-forwarded-for", ip.to_string());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(HubError::new(
                ErrorCode::Forbidden,
                "the application refused this session",
            ));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status.is_redirection() {
            return Err(HubError::new(
                ErrorCode::Unauthorized,
                "the session cookie was not accepted",
            ));
        }
        if status != reqwest::StatusCode::OK {
            return Err(unavailable(format!("answered {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > ANSWER_MAX {
                return Err(unavailable(format!("answer over {ANSWER_MAX} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        principal_of(&body).map_err(unavailable)
    }
}

/// The user and claims a callback's `200` answer names.
fn principal_of(body: &[u8]) -> Result<Principal, String> {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(body) else {
        return Err("answered 200 without a JSON object".into());
    };
    let user = match claims.get("user").or_else(|| claims.get("sub")) {
        Some(Value::String(u)) if crate::protocol::v1::is_user_name(u) => u.clone(),
        _ => return Err("answered 200 without a `user` string of 1 to 200 bytes".into()),
    };
    let expires_at_ms = match claims.get("exp") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 => Some((s * 1000.0) as u64),
            _ => return Err("answered an `exp` that is not a time in seconds".into()),
        },
    };
    Ok(Principal {
        user,
        expires_at_ms,
        claims: Value::Object(claims),
    })
}

/// A request's `Cookie` header (several joined), checked against RFC 6265's grammar so
/// garbage is refused here rather than forwarded: `Ok(None)` when there is none.
pub fn cookie_header(headers: &HeaderMap) -> Result<Option<String>, HubError> {
    let malformed = || HubError::new(ErrorCode::Unauthorized, "malformed Cookie header");
    let mut joined = String::new();
    for v in headers.get_all(header::COOKIE) {
        let v = v.to_str().map_err(|_| malformed())?;
        if cookie_pairs(v).is_none() {
            return Err(malformed());
        }
        if !joined.is_empty() {
            joined.push_str("; ");
        }
        joined.push_str(v.trim());
    }
    Ok((!joined.is_empty()).then_some(joined))
}

/// The `name=value` pairs of a `Cookie` header, or `None` when it breaks the grammar
/// (RFC 6265 §4.2.1, whitespace around `;` tolerated).
pub fn cookie_pairs(header: &str) -> Option<Vec<(&str, &str)>> {
    let is_token = |c: u8| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&c);
    let is_octet = |c: u8| c.is_ascii_graphic() && !b"\",;\\".contains(&c);
    let mut pairs = Vec::new();
    for pair in header.split(';') {
        let pair = pair.trim_matches([' ', '\t']);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        let value = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"')?,
            None => value,
        };
        if name.is_empty() || !name.bytes().all(is_token) || !value.bytes().all(is_octet) {
            return None;
        }
        pairs.push((name, value));
    }
    (!pairs.is_empty()).then_some(pairs)
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_headers_follow_the_grammar() {
        assert_eq!(
            cookie_pairs("sid=abc; theme=\"dark\""),
            Some(vec![("sid", "abc"), ("theme", "dark")])
        );
        assert_eq!(cookie_pairs("a=;b=1"), Some(vec![("a", ""), ("b", "1")]));
        for bad in [
            "", ";", "novalue", "=v", "a b=1", "a=\"1", "a=x y", "a=1,b=2", "a=\\",
        ] {
            assert_eq!(cookie_pairs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_name_a_user_or_are_refused() {
        let p = principal_of(br#"{"user":"ann","exp":2000000000,"rooms":{"a":"join"}}"#).unwrap();
        assert_eq!(p.user, "ann");
        assert_eq!(p.expires_at_ms, Some(2_000_000_000_000));
        assert_eq!(p.claims["rooms"]["a"], "join");
        assert_eq!(principal_of(br#"{"sub":"bo"}"#).unwrap().user, "bo");
        for bad in [
            &b"[]"[..],
            b"nope",
            br#"{"user":""}"#,
            br#"{"user":7}"#,
            br#"{"user":"a","exp":"soon"}"#,
        ] {
            assert!(
                principal_of(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
