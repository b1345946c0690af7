//! Where boot-keyboard reports come from: a USB HID reader through rusb, or a recording.
//!
//! rusb is blocking, so every [`ReportSource`] runs on a dedicated thread
//! ([`spawn_source`]) that forwards reports into a tokio channel. This machine has no USB
//! bus: the USB source is exercised only as far as "libusb cannot start → clear error";
//! everything after the transfer is tested with recorded reports ([`RecordedSource`]).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// One interrupt transfer and when it arrived, measured from the source's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedReport {
    /// Time since the source started (the recording's clock for recorded sources).
    pub at: Duration,
    /// The transfer's bytes (8 for a boot-keyboard report).
    pub bytes: Vec<u8>,
}

/// Why a report source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// libusb could not start (no USB bus, no permission on /dev/bus/usb).
    #[error("USB is not available: {0}")]
    NoUsb(String),
    /// No device with the configured ids is attached.
    #[error("no USB device {vid:04x}:{pid:04x}{which} is attached")]
    NotFound {
        /// Vendor id.
        vid: u16,
        /// Product id.
        pid: u16,
        /// The serial number or bus path asked for, if any.
        which: String,
    },
    /// A USB call failed (claim, detach, transfer); the reader was unplugged or is in use.
    #[error("USB {operation}: {message}")]
    Usb {
        /// What was being done.
        operation: &'static str,
        /// What libusb said.
        message: String,
    },
    /// A recording has no more reports.
    #[error("the recording has ended")]
    Ended,
}

/// A blocking source of interrupt transfers, run on its own thread.
pub trait ReportSource: Send + 'static {
    /// Waits up to `timeout` for the next transfer; `Ok(None)` when none came.
    fn next_report(&mut self, timeout: Duration) -> Result<Option<TimedReport>, SourceError>;
}

impl ReportSource for Box<dyn ReportSource> {
    fn next_report(&mut self, timeout: Duration) -> Result<Option<TimedReport>, SourceError> {
        self.as_mut().next_report(timeout)
    }
}

/// Runs `source` on a dedicated thread and returns the receiving end. The thread stops
/// when the receiver is dropped (checked at least every `poll`) or the source fails (the
/// error is the last item).
pub fn spawn_source<S: ReportSource>(
    mut source: S,
    poll: Duration,
) -> mpsc::Receiver<Result<TimedReport, SourceError>> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("rfidgw-hid".into())
        .spawn(move || {
            loop {
                if tx.is_closed() {
                    return;
                }
                match source.next_report(poll) {
                    Ok(None) => {}
                    Ok(Some(report)) => {
                        if tx.blocking_send(Ok(report)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = tx.blocking_send(Err(error));
                        return;
                    }
                }
            }
        });
    if let Err(error) = spawned {
        // The receiver then yields `None` at once; the device reports the line closed.
        tracing::error!(%error, "HID card reader: cannot start the USB thread");
    }
    rx
}

/// A recording of reports, replayed in order.
///
/// Unpaced (tests) it returns every report at once with its recorded timestamp, so nothing
/// sleeps. Paced (the demo) it waits until each report's time on the thread's clock.
#[derive(Clone, Debug)]
pub struct RecordedSource {
    reports: Vec<TimedReport>,
    next: usize,
    paced: Option<Instant>,
    repeat_after: Option<Duration>,
    offset: Duration,
}

impl RecordedSource {
    /// Replays `reports` once, without waiting.
    pub fn new(reports: Vec<TimedReport>) -> Self {
        Self {
            reports,
            next: 0,
            paced: None,
            repeat_after: None,
            offset: Duration::ZERO,
        }
    }

    /// Waits for each report's time (for the demo), and starts over `repeat_after` the
    /// last report when it is given.
    #[must_use]
    pub fn paced(mut self, repeat_after: Option<Duration>) -> Self {
        self.paced = Some(Instant::now());
        self.repeat_after = repeat_after;
        self
    }
}

impl ReportSource for RecordedSource {
    fn next_report(&mut self, timeout: Duration) -> Result<Option<TimedReport>, SourceError> {
        let Some(report) = self.reports.get(self.next) else {
            match (self.repeat_after, self.reports.last()) {
                (Some(pause), Some(last)) => {
                    self.offset = self.offset.saturating_add(last.at).saturating_add(pause);
                    self.next = 0;
                    return Ok(None);
                }
                _ => return Err(SourceError::Ended),
            }
        };
        let at = self.offset.saturating_add(report.at);
        if let Some(start) = self.paced {
            // A recorded time too far out for the clock is due at once.
            let now = Instant::now();
            let due = start.checked_add(at).unwrap_or(now);
            if due > now {
                let wait = due - now;
                if wait > timeout {
                    std::thread::sleep(timeout);
                    return Ok(None);
                }
                std::thread::sleep(wait);
            }
        }
        self.next += 1;
        Ok(Some(TimedReport {
            at,
            bytes: report.bytes.clone(),
        }))
    }
}

/// Which USB device to open, and where its reports come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbTarget {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Only the device with this serial number string.
    pub serial: Option<String>,
    /// Only the device at this bus path (`"1-1.4"`: bus 1, ports 1 then 4).
    pub bus_path: Option<String>,
    /// The HID interface number.
    pub interface: u8,
    /// The interrupt IN endpoint (`0x81` on most readers).
    pub endpoint: u8,
}

/// A USB HID keyboard-wedge reader opened through libusb (rusb).
pub struct UsbHidSource {
    handle: rusb::DeviceHandle<rusb::Context>,
    target: UsbTarget,
    started: Instant,
}

impl std::fmt::Debug for UsbHidSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbHidSource")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn usb(operation: &'static str) -> impl Fn(rusb::Error) -> SourceError {
    move |e| SourceError::Usb {
        operation,
        message: e.to_string(),
    }
}

fn bus_path(device: &rusb::Device<rusb::Context>) -> String {
    let ports = device.port_numbers().unwrap_or_default();
    let ports: Vec<String> = ports.iter().map(u8::to_string).collect();
    format!("{}-{}", device.bus_number(), ports.join("."))
}

impl UsbHidSource {
    /// Finds the reader, detaches the kernel's keyboard driver from its interface (so the
    /// card numbers do not also reach the console) and claims it.
    pub fn open(target: UsbTarget) -> Result<Self, SourceError> {
        // Never `rusb::devices()`: it panics when libusb cannot start (DESIGN.md).
        let context = rusb::Context::new().map_err(|e| SourceError::NoUsb(e.to_string()))?;
        let devices = rusb::UsbContext::devices(&context).map_err(usb("list devices"))?;
        let mut found = None;
        for device in devices.iter() {
            let Ok(descriptor) = device.device_descriptor() else {
                continue;
            };
            if descriptor.vendor_id() != target.vid || descriptor.product_id() != target.pid {
                continue;
            }
            if let Some(path) = &target.bus_path
                && &bus_path(&device) != path
            {
                continue;
            }
            let handle = device.open().map_err(usb("open"))?;
            if let Some(serial) = &target.serial {
                let theirs = handle
                    .read_serial_number_string_ascii(&descriptor)
                    .unwrap_or_default();
                if &theirs != serial {
                    continue;
                }
            }
            found = Some(handle);
            break;
        }
        let handle = found.ok_or_else(|| SourceError::NotFound {
            vid: target.vid,
            pid: target.pid,
            which: match (&target.serial, &target.bus_path) {
                (Some(s), _) => format!(" with serial {s}"),
                (None, Some(p)) => format!(" at {p}"),
                (None, None) => String::new(),
            },
        })?;
        if handle
            .kernel_driver_active(target.interface)
            .unwrap_or(false)
        {
            handle
                .detach_kernel_driver(target.interface)
                .map_err(usb("detach kernel driver"))?;
        }
        handle
            .claim_interface(target.interface)
            .map_err(usb("claim interface"))?;
        Ok(Self {
            handle,
            target,
            started: Instant::now(),
        })
    }
}

impl ReportSource for UsbHidSource {
    fn next_report(&mut self, timeout: Duration) -> Result<Option<TimedReport>, SourceError> {
        let mut buf = [0u8; 64];
        match self
            .handle
            .read_interrupt(self.target.endpoint, &mut buf, timeout)
        {
            Ok(n) => Ok(Some(TimedReport {
                at: self.started.elapsed(),
                bytes: buf.get(..n).unwrap_or_default().to_vec(),
            })),
            Err(rusb::Error::Timeout) => Ok(None),
            Err(e) => Err(usb("interrupt transfer")(e)),
        }
    }
}

impl Drop for UsbHidSource {
    fn drop(&mut self) {
        // Give the keyboard back to the kernel; the device may already be gone.
        let _ = self.handle.release_interface(self.target.interface);
        let _ = self.handle.attach_kernel_driver(self.target.interface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_usb_without_a_bus_is_an_error_not_a_panic() {
        let result = UsbHidSource::open(UsbTarget {
            vid: 0x08FF,
            pid: 0x0009,
            serial: None,
            bus_path: None,
            interface: 0,
            endpoint: 0x81,
        });
        // Here libusb cannot start (no USB bus); on a machine with USB the device is absent.
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("USB is not available") || err.contains("no USB device 08ff:0009"),
            "{err}"
        );
    }

    #[test]
    fn an_unpaced_recording_returns_every_report_then_ends() {
        let reports = vec![
            TimedReport {
                at: Duration::from_millis(0),
                bytes: vec![0; 8],
            },
            TimedReport {
                at: Duration::from_mins(1),
                bytes: vec![0; 8],
            },
        ];
        let mut source = RecordedSource::new(reports.clone());
        assert_eq!(
            source.next_report(Duration::ZERO).unwrap(),
            Some(reports[0].clone())
        );
        assert_eq!(
            source.next_report(Duration::ZERO).unwrap(),
            Some(reports[1].clone())
        );
        assert!(matches!(
            source.next_report(Duration::ZERO),
            Err(SourceError::Ended)
        ));
    }

    #[tokio::test]
    async fn the_source_thread_forwards_reports_and_the_final_error() {
        let reports = vec![TimedReport {
            at: Duration::ZERO,
            bytes: vec![1, 2, 3],
        }];
        let mut rx = spawn_source(
            RecordedSource::new(reports.clone()),
            Duration::from_millis(10),
        );
        assert_eq!(rx.recv().await.unwrap().unwrap(), reports[0]);
        assert!(matches!(rx.recv().await, Some(Err(SourceError::Ended))));
        assert!(rx.recv().await.is_none());
    }
}
