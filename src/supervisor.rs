//! Device tasks: run each configured device, restart it with capped, jittered backoff.
//!
//! A driver returns `Err` when its line breaks (DESIGN.md principle 4: every peer is
//! unreliable). The supervisor records the failure, waits, builds a fresh device from
//! config and runs it again. A device that ran for a while before failing starts again
//! from the shortest pause, so one glitch a day never accumulates into a long wait.
//!
//! The supervisor owns each device's command mailbox for the device's whole life and lends
//! it to every run ([`rfidgw_driver::CommandMailbox`]): stations keep one
//! [`rfidgw_driver::DeviceHandle`] that works across restarts, and while the device is down
//! a command is refused at once. A run is its own task, so a driver that panics is a failed
//! run (restarted like any other), never a dead device. When a run ends, a
//! [`DeviceEvent::Stopped`] report follows the driver's last report into the pipeline, which
//! ends every presence on the device there.

use std::time::Duration;

use std::sync::Arc;
use std::time::SystemTime;

use rfidgw_driver::{
    CommandError, CommandMailbox, Device, DeviceEvent, DeviceEventSink, DeviceReport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::Event;
use crate::devices::DeviceConfig;
use crate::registry::{DeviceState, Registry};

/// The first pause after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// A device that ran this long before failing is considered healthy again.
pub const STABLE_AFTER: Duration = Duration::from_mins(1);

/// The pause before restart number `failures` (1 = first failure), without jitter:
/// 0.5 s, 1 s, 2 s, … capped at `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(max)
}

/// `pause` spread by ±20 %, so devices that failed together do not retry in lockstep.
fn jittered(pause: Duration) -> Duration {
    let factor = rand::random_range(0.8..=1.2);
    pause.mul_f64(factor)
}

/// Everything a device task needs from the daemon.
#[derive(Clone)]
pub struct DeviceTaskContext {
    /// Where device reports go.
    pub reports: mpsc::Sender<DeviceReport>,
    /// Where supervisor events go.
    pub events: mpsc::Sender<Event>,
    /// The registry to keep current.
    pub registry: Registry,
    /// The longest pause between restarts.
    pub backoff_max: Duration,
}

/// Runs one device until `cancel` fires, restarting it after failures. `mailbox` is the
/// device's command mailbox, owned here for the device's whole life.
pub async fn run_device(
    config: DeviceConfig,
    mailbox: Arc<CommandMailbox>,
    ctx: DeviceTaskContext,
    cancel: CancellationToken,
) {
    let id = config.id.clone();
    let mut failures: u32 = 0;
    let mut restarts: u32 = 0;
    loop {
        let device = match config.build() {
            Ok(device) => device,
            // Config was validated at start; this only happens if a driver checks more
            // at build time (e.g. a file it needs vanished). Treat it like a failure.
            Err(error) => {
                failures += 1;
                if !pause_after_failure(&id, &error.to_string(), failures, &ctx, &cancel).await {
                    break;
                }
                restarts += 1;
                continue;
            }
        };
        ctx.registry.update(&id, |s| {
            s.state = DeviceState::Starting;
            s.restarts = restarts;
        });
        let _ = ctx
            .events
            .send(Event::DeviceStarted {
                device: id.clone(),
                restarts,
            })
            .await;
        crate::metrics::DeviceStarted {
            device: &id,
            restarts,
        }
        .emit();
        let started = Instant::now();
        let outcome = run_once(device, &id, &mailbox, &ctx, &cancel).await;
        let reason = match &outcome {
            _ if cancel.is_cancelled() => "shutdown".to_owned(),
            Ok(()) => "device task ended without being asked to".to_owned(),
            Err(error) => error.clone(),
        };
        // After the driver's last report, in the same channel: presences end here.
        let _ = ctx
            .reports
            .send(DeviceReport {
                device: id.clone(),
                at: SystemTime::now(),
                event: DeviceEvent::Stopped {
                    reason: reason.clone(),
                },
            })
            .await;
        if cancel.is_cancelled() {
            break;
        }
        let error = reason;
        if started.elapsed() >= STABLE_AFTER {
            failures = 0;
        }
        failures += 1;
        if !pause_after_failure(&id, &error, failures, &ctx, &cancel).await {
            break;
        }
        restarts += 1;
    }
    ctx.registry.update(&id, |s| s.state = DeviceState::Stopped);
    tracing::info!(device = %id, "device task stopped");
}

/// One run of a device, in a task of its own so that a panic is a failed run. The
/// mailbox is lent for the run; commands are refused at once before and after it.
async fn run_once(
    mut device: Box<dyn Device>,
    id: &str,
    mailbox: &CommandMailbox,
    ctx: &DeviceTaskContext,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let sink = DeviceEventSink::new(id.to_owned(), ctx.reports.clone());
    let returned = device.lend_commands(mailbox.lend().await);
    let run = tokio::spawn(device.run(sink, cancel.child_token()));
    mailbox.set_running(true);
    let joined = match returned {
        // A device that takes no commands: answer each one "unsupported" while it runs.
        Some(mut lease) => {
            let refuse = lease.refuse_all(CommandError::Unsupported(
                "this device takes no commands".into(),
            ));
            tokio::pin!(run);
            tokio::select! {
                joined = &mut run => joined,
                () = refuse => run.await,
            }
        }
        None => run.await,
    };
    mailbox.set_running(false);
    // The run's lease came back with the task (even from a panic): answer what it left.
    let refused = mailbox
        .lend()
        .await
        .refuse_waiting(&CommandError::NotRunning);
    if refused > 0 {
        tracing::debug!(device = %id, refused, "commands left by the ended run refused");
    }
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(join) if join.is_panic() => {
            let message = join
                .into_panic()
                .downcast::<String>()
                .map(|m| *m)
                .or_else(|p| p.downcast::<&str>().map(|m| (*m).to_owned()))
                .unwrap_or_else(|_| "no message".to_owned());
            tracing::error!(device = %id, panic = %message, "driver panicked; restarting it");
            Err(format!("driver panicked: {message}"))
        }
        Err(join) => Err(format!("device task was aborted: {join}")),
    }
}

/// Records a failure and waits before the next attempt. False when cancelled meanwhile.
async fn pause_after_failure(
    id: &str,
    error: &str,
    failures: u32,
    ctx: &DeviceTaskContext,
    cancel: &CancellationToken,
) -> bool {
    let pause = jittered(backoff(failures, ctx.backoff_max));
    crate::metrics::DeviceFailed {
        device: id,
        error,
        restart_in: pause,
    }
    .emit();
    ctx.registry.update(id, |s| {
        s.state = DeviceState::Restarting;
        s.last_error = Some(error.to_owned());
    });
    let _ = ctx
        .events
        .send(Event::DeviceFailed {
            device: id.to_owned(),
            error: error.to_owned(),
            restart_in_ms: u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
        })
        .await;
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn backoff_doubles_from_half_a_second_and_stops_at_the_cap() {
        let max = Duration::from_secs(30);
        let table = [
            (1, 500),
            (2, 1_000),
            (3, 2_000),
            (4, 4_000),
            (6, 16_000),
            (7, 30_000),
            (40, 30_000),
            (u32::MAX, 30_000),
        ];
        for (failures, ms) in table {
            assert_eq!(
                backoff(failures, max),
                Duration::from_millis(ms),
                "failures {failures}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }

    /// A sim device that "unplugs" right after every start: the supervisor must keep
    /// restarting it, with growing pauses, and show it.
    #[tokio::test(start_paused = true)]
    async fn a_failing_device_is_restarted_with_growing_pauses_and_its_state_is_visible() {
        let config: Config = toml::from_str(
            r#"
            [[devices]]
            id = "broken"
            driver = "sim"
            settings = { round_ms = 10, fail_after_ms = 0 }
            "#,
        )
        .unwrap();
        let registry = Registry::from_config(&config);
        let (reports, _reports_rx) = mpsc::channel(16);
        let (events, mut events_rx) = mpsc::channel(64);
        let ctx = DeviceTaskContext {
            reports,
            events,
            registry: registry.clone(),
            backoff_max: Duration::from_secs(4),
        };
        let cancel = CancellationToken::new();
        let mailbox = Arc::new(CommandMailbox::new("broken"));
        let task = tokio::spawn(run_device(
            config.devices[0].clone(),
            mailbox,
            ctx,
            cancel.clone(),
        ));

        let mut pauses = Vec::new();
        while pauses.len() < 5 {
            match events_rx.recv().await.unwrap() {
                Event::DeviceFailed {
                    restart_in_ms,
                    error,
                    ..
                } => {
                    assert!(error.contains("simulated unplug"), "{error}");
                    pauses.push(restart_in_ms);
                }
                Event::DeviceStarted { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let nominal = [500, 1_000, 2_000, 4_000, 4_000];
        for (pause, nominal) in pauses.iter().zip(nominal) {
            assert!(
                (nominal * 8 / 10..=nominal * 12 / 10).contains(pause),
                "pauses {pauses:?}"
            );
        }
        let status = &registry.snapshot()[0];
        assert_eq!(status.state, DeviceState::Restarting);
        assert!(status.restarts >= 4);
        assert!(
            status
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("simulated unplug")
        );

        cancel.cancel();
        task.await.unwrap();
        assert_eq!(registry.snapshot()[0].state, DeviceState::Stopped);
    }
}
