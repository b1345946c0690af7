//! Shared by the integration tests: a device started under a mailbox, and waits for events.

#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use rfidgw_driver::{
    CommandMailbox, Device, DeviceError, DeviceEvent, DeviceEventSink, DeviceHandle, DeviceReport,
    SorterState,
};
use rfidgw_modbus::{ModbusDevice, ModbusSettings};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for one wait on a loaded machine; not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running sorter device.
pub struct Running {
    pub handle: DeviceHandle,
    pub events: mpsc::Receiver<DeviceReport>,
    pub task: JoinHandle<Result<(), DeviceError>>,
    pub cancel: CancellationToken,
    _mailbox: CommandMailbox,
}

/// Parses settings or fails the test with the error.
pub fn settings(text: &str) -> ModbusSettings {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}\n{e}"))
}

/// Starts `device` with its mailbox attached.
pub async fn start(mut device: ModbusDevice) -> Running {
    let mailbox = CommandMailbox::new("sorter");
    assert!(mailbox.attach(&mut device).await, "a sorter takes commands");
    let (tx, events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("sorter", tx), cancel.clone()));
    Running {
        handle: mailbox.handle(),
        events,
        task,
        cancel,
        _mailbox: mailbox,
    }
}

impl Running {
    /// The next event `want` accepts, skipping the others.
    pub async fn next_matching(&mut self, want: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let Some(report) = self.events.recv().await else {
                    let ended = (&mut self.task).await;
                    panic!("the device stopped sending: {ended:?}");
                };
                if want(&report.event) {
                    return report.event;
                }
            }
        })
        .await
        .expect("no such event in time")
    }

    /// The next sorter state reported.
    pub async fn next_state(&mut self) -> SorterState {
        match self
            .next_matching(|e| matches!(e, DeviceEvent::Sorter(_)))
            .await
        {
            DeviceEvent::Sorter(state) => state,
            _ => unreachable!(),
        }
    }

    /// Cancels the run and expects it to end cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the run did not stop")
            .unwrap()
            .unwrap();
    }

    /// Waits for the run to end by itself and returns its error.
    pub async fn failure(&mut self) -> DeviceError {
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the run did not end")
            .unwrap()
            .expect_err("the run ended without an error")
    }
}

/// A sorter state.
pub fn state(bins_full: &[u16], jam: bool) -> SorterState {
    SorterState {
        bins_full: bins_full.to_vec(),
        jam,
    }
}
