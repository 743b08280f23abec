//! The Socket.IO state of one Engine.IO session: the sockets it has in its namespaces and a
//! binary packet waiting for its attachments.
//!
//! Every session holds one, idle or not, so it is kept small: a client is in one namespace
//! or a few, so its sockets are a short list searched in order rather than a hash map
//! (a map's smallest table is 4 buckets and a control group, about 130 bytes for one
//! socket), and the rare partial binary packet lives behind a pointer.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::engine::Session;
use super::socket::SocketRef;
use crate::protocol::socketio::Packet;

/// A binary packet and the attachments received so far.
pub(crate) type Partial = Box<(Packet, Vec<Bytes>)>;

/// Per-session Socket.IO state.
#[derive(Default)]
pub(crate) struct ClientState {
    /// The session's sockets, by namespace name.
    pub(super) sockets: Sockets,
    /// A binary packet waiting for its attachments.
    pub(super) partial: Option<Partial>,
}

/// The sockets of one session, at most one per namespace, in the order they connected.
#[derive(Default)]
pub(crate) struct Sockets(Vec<(Arc<str>, SocketRef)>);

impl Sockets {
    /// The socket in namespace `ns`.
    pub(super) fn get(&self, ns: &str) -> Option<&SocketRef> {
        self.0.iter().find(|(n, _)| &**n == ns).map(|(_, s)| s)
    }

    /// Adds (or replaces) the socket of namespace `ns`.
    pub(super) fn insert(&mut self, ns: Arc<str>, socket: SocketRef) {
        match self.0.iter_mut().find(|(n, _)| *n == ns) {
            Some(slot) => slot.1 = socket,
            None => {
                // Room for exactly one more: a first push would make room for four.
                self.0.reserve_exact(1);
                self.0.push((ns, socket));
            }
        }
    }

    /// Takes out the socket of namespace `ns`; the list gives back its memory once empty.
    pub(super) fn remove(&mut self, ns: &str) -> Option<SocketRef> {
        let i = self.0.iter().position(|(n, _)| &**n == ns)?;
        let (_, socket) = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(socket)
    }

    /// Takes out every socket.
    pub(super) fn take_all(&mut self) -> Vec<SocketRef> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// Every socket, cloned.
    pub(super) fn all(&self) -> Vec<SocketRef> {
        self.0.iter().map(|(_, s)| s.clone()).collect()
    }
}

/// The Socket.IO state of an Engine.IO session (made by the Socket.IO application's
/// `new_state`).
pub(super) fn client_of(session: &Session) -> MutexGuard<'_, ClientState> {
    let state: &Mutex<ClientState> = session
        .app_state()
        .expect("sessions of the Socket.IO engine carry Socket.IO state");
    state.lock().unwrap_or_else(|p| p.into_inner())
}
