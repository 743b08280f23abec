//! The standalone server's Socket.IO namespaces: `/` (shared with v1 clients) and any other
//! on demand, each with the mapped hub events and the middleware that names the socket's
//! user from its credentials; and the token refresh (the v1 `auth` op, the Socket.IO `auth`
//! event).

use std::sync::Arc;

use crate::auth::{self, Authenticator};
use crate::error::{ErrorCode, HubError};
use crate::hub::Hub;
use crate::sio::{install_hub_events, ConnectError, ConnectRequest, SocketIo, SocketRef};

/// The standalone server's Socket.IO surface: `/` (shared with v1 clients) and any other
/// namespace on demand, each with the hub's mapped events, and a middleware that names the
/// user: `auth.user` in auth mode `none`, a verified token otherwise.
pub(super) fn standard_namespaces(
    io: &SocketIo,
    hub: &Hub,
    auth: &Arc<Authenticator>,
    cookie: &str,
) {
    let main = io.ns("/", |_socket: SocketRef| {});
    let others = io.dynamic_ns(|name| name.len() <= 200, |_socket: SocketRef| {});
    for ns in [&main, &others] {
        if auth.required() {
            let (verifier, cookie): (Arc<Authenticator>, Arc<str>) = (auth.clone(), cookie.into());
            ns.use_middleware(move |req| {
                let (verifier, cookie) = (verifier.clone(), cookie.clone());
                async move { authenticate_socket(&verifier, &cookie, &req).await }
            });
            install_auth_event(ns, hub.clone(), auth.clone());
        } else {
            ns.use_middleware(check_user);
        }
        install_hub_events(ns);
    }
}

/// Names a Socket.IO socket's user from its credentials: the CONNECT's `auth.token` (or
/// `auth {user, password}` in mode `basic`), or those the handshake request carried
/// (header, query, cookie, session cookie). Refusals reach the client as `connect_error`
/// with `{code, message}` in `data`.
async fn authenticate_socket(
    auth: &Authenticator,
    cookie: &str,
    req: &ConnectRequest,
) -> Result<(), ConnectError> {
    let refused = |e: HubError| {
        ConnectError::new(e.message.clone())
            .with_data(serde_json::json!({"code": e.code.as_str(), "message": e.message}))
    };
    let principal = if let Authenticator::Cookie(session) = auth {
        let peer = req.handshake.address.map(|a| a.ip());
        match session.authenticate(&req.handshake.headers, peer).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(refused(auth.missing())),
            Err(e) => return Err(refused(e)),
        }
    } else if let Authenticator::Basic(basic) = auth {
        // `auth: {user, password}`, or the handshake's `Authorization: Basic`.
        let text = |k: &str| req.auth.get(k).and_then(serde_json::Value::as_str);
        let creds = match (text("user"), text("password")) {
            (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
            _ => auth::basic_credentials(&req.handshake.headers),
        };
        let Some((user, password)) = creds else {
            return Err(refused(auth.missing()));
        };
        basic.verify(&user, &password).map_err(refused)?
    } else {
        let token = match req.auth.get("token") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            _ => auth::request_token(&req.handshake.headers, &req.handshake.query(), cookie)
                .map(|(t, _)| t),
        };
        let Some(token) = token else {
            return Err(refused(auth.missing()));
        };
        auth.verify(&token).map_err(refused)?
    };
    req.set_grants(crate::hub::Grants::from_claims(&principal.claims));
    req.set_user(principal.user);
    req.set_expiry(principal.expires_at_ms);
    Ok(())
}

/// Checks a fresh token for a connection of `user`: same user, later expiry.
fn refreshed(auth: &Authenticator, user: &str, token: &str) -> Result<Option<u64>, HubError> {
    let p = auth.verify(token)?;
    if p.user != user {
        return Err(HubError::new(
            ErrorCode::Forbidden,
            "the token names another user",
        ));
    }
    Ok(p.expires_at_ms)
}

/// The v1 `auth` op: `{"op":"auth","token":"..."}` replaces the connection's token before it
/// expires; the ack carries the new `expires_at` (ms since the epoch).
pub(super) fn install_token_refresh(hub: &Hub, auth: &Arc<Authenticator>) {
    let auth = auth.clone();
    hub.on_op("auth", move |call| {
        let auth = auth.clone();
        async move {
            let token = call
                .frame
                .get("token")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| HubError::bad_request("`token` must be a string"))?;
            let at = refreshed(&auth, call.conn.user(), token)?;
            call.hub.set_expiry(&call.conn, at);
            Ok(Some(serde_json::json!({ "expires_at": at })))
        }
    });
}

/// The Socket.IO `auth` event: `socket.emit("auth", {token}, ack)` does what the v1 `auth`
/// op does; the ack gets `{ok: true, expires_at}` or `{ok: false, code, message}`.
fn install_auth_event(ns: &crate::sio::Namespace, hub: Hub, auth: Arc<Authenticator>) {
    ns.on("auth", move |s, args, ack| {
        let token = args
            .values
            .first()
            .and_then(|a| a.get("token"))
            .and_then(serde_json::Value::as_str);
        let res = match token {
            None => Err(HubError::bad_request("`token` must be a string")),
            Some(t) => refreshed(&auth, s.user(), t),
        };
        let answer = match res {
            Ok(at) => {
                hub.set_expiry(s.conn(), at);
                serde_json::json!({"ok": true, "expires_at": at})
            }
            Err(e) => {
                serde_json::json!({"ok": false, "code": e.code.as_str(), "message": e.message})
            }
        };
        if let Some(ack) = ack {
            ack.send_value(answer);
        }
    });
}

/// Refuses a CONNECT whose `auth.user` is present but not a usable user name.
async fn check_user(req: std::sync::Arc<ConnectRequest>) -> Result<(), ConnectError> {
    match req.auth.get("user") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(u)) if crate::protocol::v1::is_user_name(u) => Ok(()),
        Some(_) => Err(ConnectError::new("invalid user")
            .with_data(serde_json::json!({"code": "bad_request", "field": "auth.user"}))),
    }
}
