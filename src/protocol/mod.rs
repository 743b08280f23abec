//! Codecs: pure functions between bytes and protocol messages, no I/O.
//!
//! Each wire format Hubbub speaks has a module here. They know nothing of sockets or of
//! the hub; the front ends in [`crate::ws`] translate between them and [`crate::hub`].

pub mod engineio;
pub mod json;
pub mod msgpack;
pub mod socketio;
pub mod v1;
