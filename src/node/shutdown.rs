//! Graceful shutdown as a type: every loop selects on [`Shutdown::wait`]; triggering twice is a
//! no-op.

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] made from it.
#[derive(Debug)]
pub(crate) struct ShutdownTrigger(watch::Sender<bool>);

/// A listener for the shutdown signal; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    pub(crate) fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Starts the shutdown. Calling it again does nothing.
    pub(crate) fn fire(&self) {
        self.0
            .send_if_modified(|fired| !std::mem::replace(fired, true));
    }
}

impl Shutdown {
    /// Whether shutdown has started.
    pub(crate) fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown has started (at once if it already has).
    pub(crate) async fn wait(&mut self) {
        // An error means the trigger is gone, which only happens as the server ends.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_and_wakes_waiters() {
        let (trigger, mut s) = ShutdownTrigger::new();
        assert!(!s.is_fired());
        let mut s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.wait().await });
        trigger.fire();
        trigger.fire();
        s.wait().await;
        assert!(waiter.await.is_ok());
        assert!(s.is_fired());
    }
}
