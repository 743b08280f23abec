//! Authentication at the upgrade (DESIGN.md, "Identity and auth"): which credentials a
//! request carries, whether they are good, who they name and until when; and the gate that
//! refuses a request before any WebSocket or Socket.IO session exists.
//!
//! Mode `jwt` verifies a signed token (HS256, RS256 or ES256; the accepted algorithms are
//! pinned by configuration, so neither `none` nor an HS/RS confusion gets through) and checks
//! `exp`, `nbf`, `aud` and `iss`; `sub` is the user. The token may come from
//! `Authorization: Bearer`, the `Sec-WebSocket-Protocol` pair `bearer, <token>` (what a
//! browser's `new WebSocket(url, ["bearer", token])` sends), `?token=`, a cookie, or the
//! Socket.IO CONNECT's `auth.token`. A connection whose token expires is closed with 4401
//! unless the client sends a fresh token first (the v1 `auth` op, the Socket.IO `auth`
//! event).
//!
//! Mode `basic` checks a user name and password against a users file of Argon2 hashes;
//! mode `cookie` asks the application who its session cookie belongs to ([`session`]).
//!
//! The gate also enforces the browser origin allow-list against cross-site WebSocket
//! hijacking.

pub mod session;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{AuthMode, Config};
use crate::error::{ApiError, ErrorCode, HubError};
use crate::identity::{Credentials, Identity};
use crate::stats::RejectReason;

/// Who a connection belongs to, as its verified credentials say.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The user (the token's `sub`).
    pub user: String,
    /// When the credentials expire, in milliseconds since the epoch.
    pub expires_at_ms: Option<u64>,
    /// All verified claims, for authorization rules.
    pub claims: Value,
}

impl Principal {
    /// What a connection of this principal is allowed, and until when.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            expires_at_ms: self.expires_at_ms,
            grants: crate::hub::Grants::from_claims(&self.claims),
        }
    }
}

/// Verifies credentials for the configured mode.
#[derive(Debug)]
pub enum Authenticator {
    /// Mode `none`: nothing to verify; users name themselves.
    Open,
    /// Mode `jwt`.
    Jwt(JwtVerifier),
    /// Mode `basic`: user names and Argon2 password hashes from `users_file`.
    Basic(BasicVerifier),
    /// Mode `cookie`: the application's session cookie, checked by its callback.
    Cookie(session::CookieVerifier),
    /// The configured keys could not be loaded: everything is refused (fail closed).
    Broken(String),
}

impl Authenticator {
    /// Builds the authenticator the configuration asks for, loading key files.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        match config.auth {
            AuthMode::Jwt => JwtVerifier::from_config(config).map(Self::Jwt),
            AuthMode::Basic => BasicVerifier::from_config(config).map(Self::Basic),
            AuthMode::Cookie => session::CookieVerifier::from_config(config).map(Self::Cookie),
            _ => Ok(Self::Open),
        }
    }

    /// Like [`Self::from_config`], refusing every credential when the keys are unusable.
    pub fn from_config_or_closed(config: &Config) -> Self {
        Self::from_config(config).unwrap_or_else(|e| {
            tracing::error!("auth: {e}; every connection will be refused");
            Self::Broken(e)
        })
    }

    /// Whether connections must present credentials.
    pub fn required(&self) -> bool {
        !matches!(self, Self::Open)
    }

    /// Verifies a token.
    pub fn verify(&self, token: &str) -> Result<Principal, HubError> {
        match self {
            Self::Open => Err(HubError::new(
                ErrorCode::BadRequest,
                "this server does not use tokens (auth mode none)",
            )),
            Self::Jwt(v) => v.verify(token),
            Self::Basic(_) => Err(HubError::new(
                ErrorCode::BadRequest,
                "this server checks user names and passwords, not tokens (auth mode basic)",
            )),
            Self::Cookie(_) => Err(HubError::new(
                ErrorCode::BadRequest,
                "this server checks session cookies, not tokens (auth mode cookie); \
                 reconnect to renew the session",
            )),
            Self::Broken(e) => Err(HubError::new(
                ErrorCode::Unauthorized,
                format!("authentication is misconfigured on the server: {e}"),
            )),
        }
    }
}

impl Authenticator {
    /// The credentials of an HTTP request from `peer`, verified: `Ok(None)` when it
    /// carries none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        cookie_name: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Option<(Principal, TokenSource)>, HubError> {
        match self {
            Self::Open => Ok(None),
            Self::Cookie(c) => Ok(c
                .authenticate(headers, peer)
                .await?
                .map(|p| (p, TokenSource::Cookie))),
            Self::Basic(b) => match basic_credentials(headers) {
                None => Ok(None),
                Some((user, password)) => b
                    .verify(&user, &password)
                    .map(|p| Some((p, TokenSource::Header))),
            },
            _ => match request_token(headers, query, cookie_name) {
                None => Ok(None),
                Some((token, source)) => self.verify(&token).map(|p| Some((p, source))),
            },
        }
    }

    /// What a request without credentials is told.
    pub fn missing(&self) -> HubError {
        let message = match self {
            Self::Basic(_) => "a user name and password are required",
            Self::Cookie(_) => "a session cookie is required",
            _ => "a token is required",
        };
        HubError::new(ErrorCode::Unauthorized, message)
    }
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Mode `basic`: a users file of `name:<argon2 PHC hash>` lines (`#` comments), loaded at
/// start. A verified pair is remembered for a minute, keyed by a keyed hash of the
/// password, so a reconnect storm does not cost an Argon2 run per handshake.
#[derive(Debug)]
pub struct BasicVerifier {
    users: HashMap<String, String>,
    recent: std::sync::Mutex<HashMap<(String, u64), std::time::Instant>>,
    keys: std::hash::RandomState,
}

/// How long a verified user name and password are remembered.
const BASIC_CACHE: std::time::Duration = std::time::Duration::from_secs(60);

impl BasicVerifier {
    /// Loads `users_file`.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let path = config
            .users_file
            .as_ref()
            .ok_or("auth `basic` needs `users_file`")?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("users_file {}: {e}", path.display()))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("users_file line {}: expected name:hash", n + 1))?;
            argon2::PasswordHash::new(hash)
                .map_err(|e| format!("users_file line {}: not an Argon2 PHC hash: {e}", n + 1))?;
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(format!("users_file {}: no users", path.display()));
        }
        Ok(Self {
            users,
            recent: Default::default(),
            keys: std::hash::RandomState::new(),
        })
    }

    /// Checks a user name and password; the same refusal for an unknown user and a wrong
    /// password, so names cannot be probed.
    pub fn verify(&self, user: &str, password: &str) -> Result<Principal, HubError> {
        use argon2::PasswordVerifier;
        use std::hash::BuildHasher;
        let key = (user.to_string(), self.keys.hash_one(password));
        let now = std::time::Instant::now();
        let remembered = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, at| now.duration_since(*at) < BASIC_CACHE);
            recent.contains_key(&key)
        };
        let ok = remembered
            || self.users.get(user).is_some_and(|hash| {
                argon2::PasswordHash::new(hash).is_ok_and(|h| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
            });
        if !ok {
            return Err(HubError::new(
                ErrorCode::Unauthorized,
                "bad user name or password",
            ));
        }
        if !remembered {
            self.recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, now);
        }
        Ok(Principal {
            user: user.to_string(),
            expires_at_ms: None,
            claims: Value::Object(Default::default()),
        })
    }
}

/// Where a token was found in an HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// `Sec-WebSocket-Protocol: bearer, <token>`: the response must select `bearer`.
    Subprotocol,
    /// `?token=<token>`.
    Query,
    /// The configured cookie.
    Cookie,
}

/// The token an HTTP request carries, and where it was.
pub fn request_token(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    cookie_name: &str,
) -> Option<(String, TokenSource)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some((t.trim().to_string(), TokenSource::Header));
        }
    }
    for v in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(v) = v.to_str() else { continue };
        let mut items = v.split(',').map(str::trim);
        while let Some(item) = items.next() {
            if item.eq_ignore_ascii_case("bearer") {
                if let Some(t) = items.next().filter(|t| !t.is_empty()) {
                    return Some((t.to_string(), TokenSource::Subprotocol));
                }
            }
        }
    }
    if let Some(t) = query.get("token").filter(|t| !t.is_empty()) {
        return Some((t.clone(), TokenSource::Query));
    }
    cookie(headers, cookie_name).map(|t| (t, TokenSource::Cookie))
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// JWT verification with pinned algorithms.
#[derive(Debug)]
pub struct JwtVerifier {
    /// Accepted algorithms.
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    /// Public keys: (key id, family, key). A PEM file gives one without an id.
    public: Vec<(Option<String>, KeyFamily, DecodingKey)>,
    audience: Option<String>,
    issuer: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    Ec,
}

fn family_of(alg: Algorithm) -> Option<KeyFamily> {
    match alg {
        Algorithm::RS256 => Some(KeyFamily::Rsa),
        Algorithm::ES256 => Some(KeyFamily::Ec),
        _ => None,
    }
}

impl JwtVerifier {
    /// Loads the secret and/or public keys and checks that every accepted algorithm has a
    /// key of its kind (an HS algorithm needs the secret, never a public key).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let secret = config
            .jwt_secret
            .as_deref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let mut public = Vec::new();
        if let Some(path) = &config.jwt_public_key {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("jwt_public_key {}: {e}", path.display()))?;
            public = load_public_keys(&text)
                .map_err(|e| format!("jwt_public_key {}: {e}", path.display()))?;
        }
        let algorithms: Vec<Algorithm> = if config.jwt_algorithms.is_empty() {
            let mut implied = Vec::new();
            if secret.is_some() {
                implied.push(Algorithm::HS256);
            }
            for (_, family, _) in &public {
                let alg = match family {
                    KeyFamily::Rsa => Algorithm::RS256,
                    KeyFamily::Ec => Algorithm::ES256,
                };
                if !implied.contains(&alg) {
                    implied.push(alg);
                }
            }
            implied
        } else {
            config
                .jwt_algorithms
                .iter()
                .map(|a| match a.to_ascii_uppercase().as_str() {
                    "HS256" => Ok(Algorithm::HS256),
                    "RS256" => Ok(Algorithm::RS256),
                    "ES256" => Ok(Algorithm::ES256),
                    other => Err(format!(
                        "jwt_algorithms: `{other}` is not accepted (HS256, RS256 or ES256)"
                    )),
                })
                .collect::<Result<_, _>>()?
        };
        if algorithms.is_empty() {
            return Err("no usable key for auth jwt".into());
        }
        for alg in &algorithms {
            let usable = match family_of(*alg) {
                None => secret.is_some(),
                Some(f) => public.iter().any(|(_, kf, _)| *kf == f),
            };
            if !usable {
                return Err(format!(
                    "jwt_algorithms: {alg:?} has no key of its kind (HS256 needs jwt_secret; \
                     RS256 and ES256 need an RSA or EC jwt_public_key)"
                ));
            }
        }
        Ok(Self {
            algorithms,
            secret,
            public,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
        })
    }

    /// Verifies `token`'s signature with a key of the algorithm its header names (when that
    /// algorithm is accepted), then `exp`, `nbf`, `aud` and `iss`; returns its `sub`.
    pub fn verify(&self, token: &str) -> Result<Principal, HubError> {
        let unauthorized = |m: &str| HubError::new(ErrorCode::Unauthorized, m.to_string());
        let head =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        if !self.algorithms.contains(&head.alg) {
            return Err(unauthorized(&format!(
                "token algorithm {:?} is not accepted",
                head.alg
            )));
        }
        let keys: Vec<&DecodingKey> = match family_of(head.alg) {
            None => self.secret.iter().collect(),
            Some(f) => self
                .public
                .iter()
                .filter(|(kid, kf, _)| {
                    *kf == f
                        && match (&head.kid, kid) {
                            (Some(want), Some(have)) => want == have,
                            _ => true,
                        }
                })
                .map(|(_, _, k)| k)
                .collect(),
        };
        let mut validation = Validation::new(head.alg);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = unauthorized("no key for this token");
        for key in keys {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation) {
                Ok(data) => return principal(data.claims),
                Err(e) => last = unauthorized(describe(&e)),
            }
        }
        Err(last)
    }
}

fn principal(claims: serde_json::Map<String, Value>) -> Result<Principal, HubError> {
    let user = match claims.get("sub").and_then(Value::as_str) {
        Some(s) if crate::protocol::v1::is_user_name(s) => s.to_string(),
        _ => {
            return Err(HubError::new(
                ErrorCode::Unauthorized,
                "the token's sub must name a user (1 to 200 bytes)",
            ))
        }
    };
    let expires_at_ms = claims
        .get("exp")
        .and_then(Value::as_u64)
        .map(|s| s.saturating_mul(1000));
    Ok(Principal {
        user,
        expires_at_ms,
        claims: Value::Object(claims),
    })
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not valid yet (nbf)",
        K::InvalidSignature => "bad token signature",
        K::InvalidAudience => "wrong token audience",
        K::InvalidIssuer => "wrong token issuer",
        K::InvalidAlgorithm => "token algorithm is not accepted",
        K::MissingRequiredClaim(_) => "token lacks a required claim (exp, sub)",
        _ => "malformed token",
    }
}

fn load_public_keys(text: &str) -> Result<Vec<(Option<String>, KeyFamily, DecodingKey)>, String> {
    if text.trim_start().starts_with('{') {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut out = Vec::new();
        for jwk in &set.keys {
            let family = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("a JWKS key: {e}"))?;
            out.push((jwk.common.key_id.clone(), family, key));
        }
        if out.is_empty() {
            return Err("the JWKS has no RSA or EC key".into());
        }
        return Ok(out);
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(text.as_bytes()) {
        if !text.contains("EC ") {
            return Ok(vec![(None, KeyFamily::Rsa, k)]);
        }
    }
    if let Ok(k) = DecodingKey::from_ec_pem(text.as_bytes()) {
        return Ok(vec![(None, KeyFamily::Ec, k)]);
    }
    Err("not a PEM RSA or EC public key, nor a JWKS document".into())
}

/// The origin allow-list of browser connections.
#[derive(Clone, Debug)]
pub enum Origins {
    /// Any origin.
    Any,
    /// Only these origins (`scheme://host[:port]`).
    List(Vec<String>),
    /// Only the server's own origin (the `Host` the request was sent to).
    SameOrigin,
}

impl Origins {
    /// The policy the configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        match &config.allowed_origins {
            Some(list) if list.iter().any(|o| o == "*") => Self::Any,
            Some(list) => Self::List(
                list.iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
            None if config.auth == AuthMode::None => Self::Any,
            None => Self::SameOrigin,
        }
    }

    /// Whether a request with these headers may connect. Requests without `Origin` (not
    /// from a browser page) are allowed: the check protects browsers' ambient credentials.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(&origin),
            Self::SameOrigin => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_ascii_lowercase);
                let origin_host = origin.split_once("://").map(|(_, h)| h);
                host.is_some() && origin_host == host.as_deref()
            }
        }
    }
}

/// What the gate needs; shared by the routes it protects.
#[derive(Clone, Debug)]
pub struct Gate {
    /// The verifier.
    pub auth: Arc<Authenticator>,
    /// The origin policy.
    pub origins: Arc<Origins>,
    /// The cookie a token may come in.
    pub cookie: Arc<str>,
    /// `true` for Socket.IO routes: credentials are then optional at the HTTP level (they
    /// may come in the CONNECT packet), but refused when present and bad.
    pub socketio: bool,
    /// Handshakes per second per client address.
    pub handshakes: Arc<crate::limits::AddressLimiter>,
    /// The hub whose stats count the refusals (`hubbub_upgrades_rejected_total`).
    pub hub: crate::Hub,
}

/// Axum middleware: refuses a request before the upgrade when its origin is not allowed
/// (403) or its credentials are missing or bad (401), with the JSON error body; otherwise
/// passes the user on as [`Identity`] and [`Credentials`].
pub async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let refuse = |reason: RejectReason, e: ApiError| {
        gate.hub.stats().upgrade_rejected(reason);
        e.into_response()
    };
    if !gate.origins.allows(req.headers()) {
        let e = ApiError::new(ErrorCode::Forbidden, "origin not allowed");
        return refuse(RejectReason::Unauthorized, e);
    }
    let query = axum::extract::Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|axum::extract::Query(q)| q)
        .unwrap_or_default();
    // Socket.IO: only the handshake request (no `sid` yet) is checked here.
    if gate.socketio && query.contains_key("sid") {
        return next.run(req).await;
    }
    let addr = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(addr) = addr {
        if !gate.handshakes.allow(addr, crate::hub::now_ms()) {
            let e = ApiError::new(
                ErrorCode::RateLimited,
                "too many connections from this address; retry later",
            );
            return refuse(RejectReason::RateLimited, e);
        }
    }
    if !gate.auth.required() {
        return next.run(req).await;
    }
    let found = gate
        .auth
        .authenticate(req.headers(), &query, &gate.cookie, addr)
        .await;
    let (principal, source) = match found {
        Ok(Some(found)) => found,
        Ok(None) if gate.socketio => return next.run(req).await,
        Ok(None) => {
            return refuse(RejectReason::Unauthorized, gate.auth.missing().into());
        }
        Err(e) => return refuse(RejectReason::Unauthorized, e.into()),
    };
    req.extensions_mut().insert(principal.credentials());
    req.extensions_mut().insert(Identity(principal.user));
    let mut response = next.run(req).await;
    if source == TokenSource::Subprotocol && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A browser fails the connection unless the server selects one of its protocols.
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens_are_found_in_each_place_in_order() {
        let none = HashMap::new();
        let q: HashMap<String, String> = [("token".to_string(), "q1".to_string())].into();
        assert_eq!(
            request_token(&headers(&[("authorization", "Bearer h1")]), &q, "c"),
            Some(("h1".into(), TokenSource::Header))
        );
        assert_eq!(
            request_token(
                &headers(&[("sec-websocket-protocol", "bearer, s1")]),
                &none,
                "c"
            ),
            Some(("s1".into(), TokenSource::Subprotocol))
        );
        assert_eq!(
            request_token(&headers(&[]), &q, "c"),
            Some(("q1".into(), TokenSource::Query))
        );
        assert_eq!(
            request_token(&headers(&[("cookie", "a=1; c=k1; d=2")]), &none, "c"),
            Some(("k1".into(), TokenSource::Cookie))
        );
        assert_eq!(
            request_token(&headers(&[("authorization", "Basic x")]), &none, "c"),
            None
        );
        assert_eq!(
            request_token(&headers(&[("cookie", "c=")]), &none, "c"),
            None
        );
    }

    #[test]
    fn origins_follow_the_policy() {
        let page = headers(&[("origin", "https://app.example"), ("host", "api.example")]);
        let same = headers(&[
            ("origin", "http://api.example:3000"),
            ("host", "api.example:3000"),
        ]);
        let no_origin = headers(&[("host", "api.example")]);
        let list = Origins::List(vec!["https://app.example".into()]);
        assert!(list.allows(&page));
        assert!(!list.allows(&same));
        assert!(list.allows(&no_origin));
        assert!(!Origins::SameOrigin.allows(&page));
        assert!(Origins::SameOrigin.allows(&same));
        assert!(Origins::Any.allows(&page));
    }
}
