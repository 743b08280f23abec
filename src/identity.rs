//! Who a request to open a connection belongs to, as the layers above the front ends settle
//! it before the upgrade: the user ([`Identity`]) and what their credentials allow
//! ([`Credentials`]). Application middleware or Hubbub's auth gate put them in the request's
//! extensions; the front ends read them. Both sides depend on this module, not on each
//! other.

/// The authenticated user of a request, set by application middleware before the upgrade.
///
/// When a request carries this extension, the connection belongs to that user whatever the
/// path or query say; middleware that rejects the request answers with HTTP 401/403 and no
/// WebSocket is ever created. See `examples/auth.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub String);

/// What a request's verified credentials say beyond the user: set by the auth gate next to
/// [`Identity`], so a front end can schedule the 4401 close and restrict the connection to
/// its grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// When they expire, ms since the epoch.
    pub expires_at_ms: Option<u64>,
    /// What they allow.
    pub grants: crate::hub::Grants,
}
