//! Hubbub: real-time messaging over raw WebSocket and Socket.IO on the same port as
//! ordinary HTTP routes, as one binary and as a library.
//!
//! # Layout
//!
//! Data flows one way: bytes → packet (a codec in [`protocol`]) → hub call ([`hub`]) →
//! one encoded delivery shared by every recipient → each connection's outbox → that
//! connection's own task, the only one that touches its socket. Imports point down the
//! layers, as the folders show them:
//!
//! - app: [`server`] (puts it together: [`Hubbub`] builds the router and serves it with
//!   heartbeats, the stats log and graceful shutdown), [`api`] (the HTTP API, metrics and
//!   health), [`auth`] (credentials at the upgrade), [`config`] (flags, environment,
//!   `hubbub.toml`);
//! - services: [`services`] (rooms, direct messages, notifications, the chat schema, the
//!   seeds' Socket.IO chat events), on the hub's public API and the Socket.IO handlers;
//! - fronts: [`ws`] (raw WebSocket, protocol v1, the echo route) and [`sio`] (Engine.IO and
//!   Socket.IO), which read [`identity`] (who a request belongs to);
//! - hub: [`hub`] (connections, users, rooms, presence, history and fan-out; knows no wire
//!   format), with [`limits`] and [`stats`];
//! - store: [`store`] (the durable tier: SQLite by default);
//! - codecs: [`protocol`] (pure functions, bytes ↔ messages, no I/O), with [`error`]'s codes.
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
pub mod cluster;
pub mod config;
pub mod error;
pub mod graphql;
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
