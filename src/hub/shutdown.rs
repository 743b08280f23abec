//! Shutdown: refuse new connections, ask every open one to close, wait until all are gone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::hooks::ShutdownHook;
use super::Hub;

impl Hub {
    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Begins shutdown: refuses new connections and asks every open one to close with
    /// `code` (1001 for a server going away).
    pub fn shutdown(&self, code: u16, reason: &str) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for c in self.all_conns() {
            c.close(code, reason);
        }
        let hooks: Vec<ShutdownHook> = self.hooks().on_shutdown.clone();
        for h in hooks {
            h(code, reason);
        }
    }

    /// Runs `f` at shutdown, after every connection was asked to close (front ends close
    /// what the hub does not know, such as Socket.IO sessions without a namespace).
    pub fn on_shutdown(&self, f: impl Fn(u16, &str) + Send + Sync + 'static) {
        self.hooks_mut().on_shutdown.push(Arc::new(f));
    }

    /// Waits until every connection slot is released, or `timeout`; true if all closed.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.reserved.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inner.reserved.load(Ordering::Acquire) == 0;
            }
        }
    }
}
