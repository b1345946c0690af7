//! Helpers shared by the daemon-level integration tests.

use std::time::Duration;

/// Bound on one wait on a loaded CI machine; not a timing assertion.
pub const PATIENCE: Duration = Duration::from_mins(1);

/// Polls `probe` until it finds something, failing the test after [`PATIENCE`].
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
