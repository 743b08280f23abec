//! Hubbub: real-time messaging over raw WebSocket (and, soon, Socket.IO) on the same port
//! as ordinary HTTP routes, as one binary and as a library.
//!
//! # Layout
//!
//! Data flows one way: bytes → packet (a codec in [`protocol`]) → hub call ([`hub`]) →
//! one encoded delivery shared by every recipient → each connection's outbox → that
//! connection's own task, the only one that touches its socket ([`ws`]).
//!
//! - [`protocol`]: pure codecs, bytes ↔ messages, no I/O.
//! - [`hub`]: connections, users, rooms, presence, history and fan-out; knows no wire format.
//! - [`ws`]: the raw WebSocket front end (protocol v1, the echo route).
//! - [`api`]: the HTTP API for back ends, metrics and health.
//! - [`store`]: the durable tier of rooms and history (SQLite by default).
//! - [`config`]: settings from flags, environment and `hubbub.toml`.
//! - [`server`]: puts it together: [`Hubbub`] builds the router and serves it with
//!   heartbeats, the stats log and graceful shutdown.
//!
//! # As a library
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use hubbub::{Config, Hubbub};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hubbub = Hubbub::new(Config::default());
//! let hub = hubbub.hub().clone(); // emit from anywhere: hub.to_room("news").emit(...)
//! hub.on_op("shout", |call| async move {
//!     call.hub.to_all().from(call.conn.user_arc()).emit("shout", call.frame)?;
//!     Ok(None)
//! });
//! let app = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .merge(hubbub.router());
//! let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
//! hubbub.serve(listener, app, std::future::pending()).await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod services;
pub mod sio;
pub mod stats;
pub mod store;
pub mod ws;

pub use config::Config;
pub use error::{ErrorCode, HubError};
pub use hub::{Conn, ConnId, Hub, Payload};
pub use server::Hubbub;
