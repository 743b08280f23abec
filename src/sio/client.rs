//! The Socket.IO state of one Engine.IO session: the sockets it has in its namespaces and a
//! binary packet waiting for its attachments.
//!
//! Every session holds one, idle or not, so it is kept small: a client is in one namespace
//! or a few, so its sockets are a short list searched in order rather than a hash map
//! (a map's smallest table is 4 buckets and a control group, about 130 bytes for one
//! socket), and the rare partial binary packet lives behind a pointer.
//!
//! The state is generic over the socket type so that this module depends on nothing above
//! it: [`super::socket`] names the concrete state and reaches it from a session.

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::socketio::Packet;

/// A binary packet and the attachments received so far.
pub(crate) type Partial = Box<(Packet, Vec<Bytes>)>;

/// Per-session Socket.IO state, `S` being the socket type.
pub(crate) struct ClientState<S> {
    /// The session's sockets, by namespace name.
    pub(super) sockets: Sockets<S>,
    /// A binary packet waiting for its attachments.
    pub(super) partial: Option<Partial>,
}

impl<S> Default for ClientState<S> {
    fn default() -> Self {
        Self {
            sockets: Sockets::default(),
            partial: None,
        }
    }
}

/// The sockets of one session, at most one per namespace, in the order they connected.
pub(crate) struct Sockets<T>(Vec<(Arc<str>, T)>);

impl<T> Default for Sockets<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Sockets<T> {
    /// The socket in namespace `ns`.
    pub(super) fn get(&self, ns: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| &**n == ns).map(|(_, s)| s)
    }

    /// Adds (or replaces) the socket of namespace `ns`.
    pub(super) fn insert(&mut self, ns: Arc<str>, socket: T) {
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
    pub(super) fn remove(&mut self, ns: &str) -> Option<T> {
        let i = self.0.iter().position(|(n, _)| &**n == ns)?;
        let (_, socket) = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(socket)
    }

    /// Takes out every socket.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// Every socket, cloned.
    pub(super) fn all(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.0.iter().map(|(_, s)| s.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session holds this state, idle or not: a list's handle and a pointer.
    #[test]
    fn the_state_every_session_holds_is_two_words_and_a_list() {
        assert!(
            std::mem::size_of::<ClientState<Arc<()>>>() <= 32,
            "ClientState is {} bytes",
            std::mem::size_of::<ClientState<Arc<()>>>()
        );
    }

    #[test]
    fn sockets_are_found_replaced_and_removed_by_namespace() {
        let mut s: Sockets<u32> = Sockets::default();
        s.insert("/".into(), 1);
        // One socket takes room for one, not the four a first push would make.
        assert_eq!(s.0.capacity(), 1);
        s.insert("/chat".into(), 2);
        s.insert("/".into(), 3);
        assert_eq!(s.get("/"), Some(&3));
        assert_eq!(s.get("/chat"), Some(&2));
        assert_eq!(s.get("/admin"), None);
        assert_eq!(s.all(), vec![3, 2]);
        assert_eq!(s.remove("/admin"), None);
        assert_eq!(s.remove("/"), Some(3));
        assert_eq!(s.remove("/chat"), Some(2));
        // Empty again, the list holds no memory.
        assert_eq!(s.0.capacity(), 0);
        s.insert("/".into(), 4);
        assert_eq!(s.take_all(), vec![4]);
        assert!(s.get("/").is_none());
    }
}
