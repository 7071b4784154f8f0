//! Graceful shutdown, passed down explicitly (as in mini-redis): one
//! [`tokio::sync::broadcast`] channel; every long-running task holds a
//! [`Shutdown`] and returns when it fires. SIGTERM and SIGINT fire it.

use tokio::sync::broadcast;

/// Listens for the shutdown notice. Cheap to clone via [`Shutdown::resubscribe`].
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    /// Wraps a receiver of the broadcast channel.
    pub fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown { is_shutdown: false, notify }
    }

    /// Whether the notice has been received.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Waits for the notice (returns at once if it was already received, or
    /// if the sender is gone).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }

    /// Checks without waiting.
    pub fn poll_now(&mut self) -> bool {
        if !self.is_shutdown {
            match self.notify.try_recv() {
                Ok(()) | Err(broadcast::error::TryRecvError::Closed) | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    self.is_shutdown = true
                }
                Err(broadcast::error::TryRecvError::Empty) => {}
            }
        }
        self.is_shutdown
    }

    /// Another listener of the same channel.
    pub fn resubscribe(&self) -> Shutdown {
        Shutdown { is_shutdown: self.is_shutdown, notify: self.notify.resubscribe() }
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
