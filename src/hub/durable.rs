//! Waiting for a write to be committed (DESIGN.md, "Durability").
//!
//! A publish to a history room is delivered live at once, and its acknowledgement waits for
//! the store to commit it. [`Commit`] is that wait: the store's writer thread completes it
//! after the batch holding the message is on disk, and the front end either attaches a
//! callback ([`Commit::then`], which then runs on the writer thread and only queues the ack)
//! or awaits it. No task or timer per message: one small allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{ErrorCode, HubError};
use crate::store::{Done, StoreError};

type Then = Box<dyn FnOnce(Result<(), HubError>) + Send>;

enum State {
    Pending {
        waker: Option<Waker>,
        then: Option<Then>,
    },
    Done(Result<(), HubError>),
    /// The outcome was handed over.
    Taken,
}

/// A write on its way to the store; completes with `Ok` once committed, or `unavailable`.
#[derive(Clone)]
pub struct Commit(Arc<Mutex<State>>);

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = matches!(*self.lock(), State::Done(_) | State::Taken);
        f.debug_struct("Commit").field("done", &done).finish()
    }
}

/// The error a client gets when the store did not take or keep its message.
pub fn unavailable(e: &StoreError) -> HubError {
    HubError::new(ErrorCode::Unavailable, e.to_string())
}

impl Commit {
    /// A pending commit and the [`Done`] the store completes it with.
    pub fn pending() -> (Self, Done) {
        let state = Arc::new(Mutex::new(State::Pending {
            waker: None,
            then: None,
        }));
        let commit = Self(state.clone());
        let done: Done = Box::new(move |r: Result<(), StoreError>| {
            Self(state).complete(r.map_err(|e| unavailable(&e)));
        });
        (commit, done)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, outcome: Result<(), HubError>) {
        let mut st = self.lock();
        let State::Pending { waker, then } =
            std::mem::replace(&mut *st, State::Done(outcome.clone()))
        else {
            return;
        };
        if let Some(then) = then {
            *st = State::Taken;
            drop(st);
            then(outcome);
        } else if let Some(w) = waker {
            drop(st);
            w.wake();
        }
    }

    /// Runs `f` with the outcome: now if it is known, otherwise on the store's thread when
    /// it is (so `f` must only queue work).
    pub fn then(self, f: impl FnOnce(Result<(), HubError>) + Send + 'static) {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Taken) {
            State::Pending { waker, .. } => {
                *st = State::Pending {
                    waker,
                    then: Some(Box::new(f)),
                };
            }
            State::Done(outcome) => {
                drop(st);
                f(outcome);
            }
            State::Taken => {
                drop(st);
                f(Err(HubError::new(
                    ErrorCode::Internal,
                    "the commit's outcome was taken already",
                )));
            }
        }
    }
}

impl Future for Commit {
    type Output = Result<(), HubError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.lock();
        match &mut *st {
            State::Pending { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Done(outcome) => {
                let outcome = outcome.clone();
                *st = State::Taken;
                Poll::Ready(outcome)
            }
            State::Taken => Poll::Ready(Err(HubError::new(
                ErrorCode::Internal,
                "the commit's outcome was taken already",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn then_runs_when_the_store_reports_and_not_before() {
        let (commit, done) = Commit::pending();
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        commit.then(move |r| *s.lock().unwrap() = Some(r));
        assert!(seen.lock().unwrap().is_none());
        done(Err(StoreError::Busy));
        let got = seen.lock().unwrap().clone().unwrap();
        assert_eq!(got.unwrap_err().code, ErrorCode::Unavailable);
    }

    #[tokio::test]
    async fn awaiting_gets_the_outcome() {
        let (commit, done) = Commit::pending();
        let t = tokio::spawn(commit);
        tokio::task::yield_now().await;
        done(Ok(()));
        assert_eq!(t.await.unwrap(), Ok(()));
        let (commit, done) = Commit::pending();
        done(Ok(()));
        assert_eq!(commit.await, Ok(()));
    }
}
