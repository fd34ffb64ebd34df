//! Wake-ups no socket reports: a list of slab tokens to drive on the reactor's next turn, and
//! the [`Wake`] handle a connection's owner keeps to ask for a turn.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

/// Connections waiting to be driven without a socket event.
#[derive(Default)]
pub(crate) struct Ready {
    tokens: RefCell<Vec<u32>>,
    /// The reactor's task, parked while nothing is ready.
    pub(super) waker: Cell<Option<Waker>>,
}

impl Ready {
    /// Queues `token` (at most once per connection: its [`Wake`] keeps the flag) and wakes
    /// the reactor.
    fn mark(&self, token: u32) {
        self.tokens.borrow_mut().push(token);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tokens.borrow().is_empty()
    }

    /// Waits until a token is queued: for a driver of wake-ups other than the reactor's own
    /// task (the Engine.IO long-polling sessions, which have no socket to watch).
    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if !self.is_empty() {
                return std::task::Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
        .await;
    }

    /// Moves the queued tokens into `batch` (which must be empty), keeping its capacity here.
    pub(crate) fn take_into(&self, batch: &mut Vec<u32>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut *self.tokens.borrow_mut(), batch);
    }
}

/// How a connection asks its reactor for a turn: its slab token in the reactor's [`Ready`]
/// list, queued at most once until the reactor drives it.
pub(crate) struct Wake {
    ready: Rc<Ready>,
    token: u32,
    /// Queued in `ready` and not yet driven.
    marked: Cell<bool>,
}

impl Wake {
    /// The wake-up of slot `token` of the reactor that `ready` belongs to.
    pub(crate) fn new(ready: Rc<Ready>, token: u32) -> Wake {
        Wake {
            ready,
            token,
            marked: Cell::new(false),
        }
    }

    /// Asks for a turn (once, however often this is called before the turn).
    pub(crate) fn wake(&self) {
        if !self.marked.replace(true) {
            self.ready.mark(self.token);
        }
    }

    /// The reactor is driving the connection: later wake-ups queue it again.
    pub(crate) fn unmark(&self) {
        self.marked.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_queued_for_a_turn_once_until_driven() {
        let ready = Rc::new(Ready::default());
        let wake = Wake::new(ready.clone(), 7);
        wake.wake();
        wake.wake();
        wake.wake();
        let mut batch = Vec::new();
        ready.take_into(&mut batch);
        assert_eq!(batch, [7], "three wake-ups, one entry");
        // Driven: the next wake-up queues it again.
        wake.unmark();
        wake.wake();
        batch.clear();
        ready.take_into(&mut batch);
        assert_eq!(batch, [7]);
    }
}
