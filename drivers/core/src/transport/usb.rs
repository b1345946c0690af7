//! Vendor-class USB readers through rusb, bridged to the async byte-stream shape.
//!
//! libusb is blocking, so one dedicated OS thread owns the device: it writes what the
//! driver sends to the OUT endpoint and reads the IN endpoint (bulk or interrupt) with a
//! short timeout, passing each transfer over a channel. The libusb calls sit behind the
//! small [`UsbLink`] trait, so the bridge is tested with recorded transfers (this build
//! machine has no USB bus).
//!
//! rusb's `rusb::devices()` panics when libusb cannot start; this module only ever uses
//! `rusb::Context::new()?`, which returns an error instead.

use std::io;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use rusb::UsbContext;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::TransportError;

/// Which transfer type the IN endpoint uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsbEndpointKind {
    /// Bulk transfers.
    #[default]
    Bulk,
    /// Interrupt transfers.
    Interrupt,
}

/// The `usb` transport's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbConfig {
    /// USB vendor id (hex text such as `"0AB1"` or an integer).
    #[serde(with = "hex_u16")]
    pub vendor_id: u16,
    /// USB product id.
    #[serde(with = "hex_u16")]
    pub product_id: u16,
    /// Serial number, to pick one of several identical readers.
    #[serde(default)]
    pub serial_number: Option<String>,
    /// Interface number to claim.
    #[serde(default)]
    pub interface: u8,
    /// IN endpoint address (with the direction bit, e.g. `"81"`).
    #[serde(with = "crate::hex_serde::byte")]
    pub endpoint_in: u8,
    /// OUT endpoint address (e.g. `"02"`).
    #[serde(with = "crate::hex_serde::byte")]
    pub endpoint_out: u8,
    /// Transfer type of the IN endpoint.
    #[serde(default)]
    pub in_kind: UsbEndpointKind,
}

mod hex_u16 {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        match Text::deserialize(d)? {
            Text::Number(n) => u16::try_from(n)
                .map_err(|_| serde::de::Error::custom(format!("{n} is not a USB id (0 to 65535)"))),
            Text::Text(t) => {
                u16::from_str_radix(t.trim().trim_start_matches("0x"), 16).map_err(|_| {
                    serde::de::Error::custom(format!("`{t}` is not a hex USB id such as \"0AB1\""))
                })
            }
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:04X}"))
    }
}

/// Why a USB transfer did not complete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsbLinkError {
    /// Nothing arrived within the timeout (normal while the reader is idle).
    #[error("timeout")]
    Timeout,
    /// The device went away (unplugged).
    #[error("device disconnected")]
    Disconnected,
    /// Any other libusb failure.
    #[error("{0}")]
    Other(String),
}

/// The blocking USB calls the bridge needs; rusb in production, recorded transfers in tests.
pub trait UsbLink: Send + 'static {
    /// Reads one transfer from the IN endpoint.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbLinkError>;
    /// Writes `data` to the OUT endpoint, returning how much was taken.
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<usize, UsbLinkError>;
}

/// How long the bridge thread blocks in one IN read before it looks for outgoing data;
/// this bounds the extra latency of a request.
const READ_SLICE: Duration = Duration::from_millis(5);
/// How long one OUT transfer may take before the link counts as broken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest IN transfer read at once (max packet size of full-speed bulk is 64; allow more).
const READ_BUFFER: usize = 4096;

/// The async end of a USB bridge: reads what the IN endpoint delivered, writes go to OUT.
#[derive(Debug)]
pub struct UsbStream {
    inbound: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    offset: usize,
    outbound: std_mpsc::Sender<Vec<u8>>,
}

impl UsbStream {
    /// Starts the bridge thread over `link`. The thread ends when the stream is dropped or
    /// the link fails (the failure is the next read's error).
    pub fn spawn(link: impl UsbLink) -> io::Result<Self> {
        let (in_tx, inbound) = mpsc::channel(64);
        let (outbound, out_rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("rfidgw-usb".into())
            .spawn(move || bridge(link, &in_tx, &out_rx))?;
        Ok(Self {
            inbound,
            pending: Vec::new(),
            offset: 0,
            outbound,
        })
    }
}

fn link_error(error: &UsbLinkError) -> io::Error {
    match error {
        UsbLinkError::Disconnected => {
            io::Error::new(io::ErrorKind::NotConnected, "usb device disconnected")
        }
        other => io::Error::other(format!("usb: {other}")),
    }
}

fn bridge(
    mut link: impl UsbLink,
    in_tx: &mpsc::Sender<io::Result<Vec<u8>>>,
    out_rx: &std_mpsc::Receiver<Vec<u8>>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        loop {
            match out_rx.try_recv() {
                Ok(data) => {
                    let mut rest = &data[..];
                    while !rest.is_empty() {
                        match link.write(rest, WRITE_TIMEOUT) {
                            Ok(0) => {
                                let _ = in_tx.blocking_send(Err(io::Error::new(
                                    io::ErrorKind::WriteZero,
                                    "usb OUT endpoint took no bytes",
                                )));
                                return;
                            }
                            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                            Err(e) => {
                                let _ = in_tx.blocking_send(Err(link_error(&e)));
                                return;
                            }
                        }
                    }
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        if in_tx.is_closed() {
            return;
        }
        match link.read(&mut buf, READ_SLICE) {
            Ok(0) | Err(UsbLinkError::Timeout) => {}
            Ok(n) => {
                let data = buf.get(..n).unwrap_or(&buf).to_vec();
                if in_tx.blocking_send(Ok(data)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = in_tx.blocking_send(Err(link_error(&e)));
                return;
            }
        }
    }
}

impl AsyncRead for UsbStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let this = &mut *self;
            if let Some(rest) = this.pending.get(this.offset..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(out.remaining());
                out.put_slice(rest.get(..n).unwrap_or(rest));
                this.offset += n;
                return Poll::Ready(Ok(()));
            }
            match this.inbound.poll_recv(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    this.pending = data;
                    this.offset = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // The bridge thread ended without an error: treat as end of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for UsbStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.outbound.send(buf.to_vec()) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "usb bridge thread has ended",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A [`UsbLink`] over a real device opened with rusb.
pub struct RusbLink {
    handle: rusb::DeviceHandle<rusb::Context>,
    interface: u8,
    endpoint_in: u8,
    endpoint_out: u8,
    in_kind: UsbEndpointKind,
}

fn usb_error(what: &str, error: rusb::Error) -> TransportError {
    TransportError::Usb(format!("{what}: {error}"))
}

impl RusbLink {
    /// Finds the configured device, claims its interface (detaching a kernel driver).
    pub fn open(config: &UsbConfig) -> Result<Self, TransportError> {
        let context =
            rusb::Context::new().map_err(|e| usb_error("libusb cannot start (no USB bus?)", e))?;
        let devices = context
            .devices()
            .map_err(|e| usb_error("listing devices", e))?;
        for device in devices.iter() {
            let Ok(descriptor) = device.device_descriptor() else {
                continue;
            };
            if descriptor.vendor_id() != config.vendor_id
                || descriptor.product_id() != config.product_id
            {
                continue;
            }
            let handle = device
                .open()
                .map_err(|e| usb_error("opening the device", e))?;
            if let Some(wanted) = &config.serial_number {
                let serial = handle
                    .read_serial_number_string_ascii(&descriptor)
                    .unwrap_or_default();
                if &serial != wanted {
                    continue;
                }
            }
            // Not every platform can detach; when it cannot, claiming tells us.
            let _ = handle.set_auto_detach_kernel_driver(true);
            handle
                .claim_interface(config.interface)
                .map_err(|e| usb_error("claiming the interface", e))?;
            return Ok(Self {
                handle,
                interface: config.interface,
                endpoint_in: config.endpoint_in,
                endpoint_out: config.endpoint_out,
                in_kind: config.in_kind,
            });
        }
        Err(TransportError::Usb(format!(
            "no device {:04x}:{:04x}{} found",
            config.vendor_id,
            config.product_id,
            config
                .serial_number
                .as_ref()
                .map(|s| format!(" with serial {s}"))
                .unwrap_or_default()
        )))
    }
}

fn from_rusb(error: rusb::Error) -> UsbLinkError {
    match error {
        rusb::Error::Timeout => UsbLinkError::Timeout,
        rusb::Error::NoDevice => UsbLinkError::Disconnected,
        other => UsbLinkError::Other(other.to_string()),
    }
}

impl UsbLink for RusbLink {
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbLinkError> {
        match self.in_kind {
            UsbEndpointKind::Bulk => self.handle.read_bulk(self.endpoint_in, buf, timeout),
            UsbEndpointKind::Interrupt => {
                self.handle.read_interrupt(self.endpoint_in, buf, timeout)
            }
        }
        .map_err(from_rusb)
    }

    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<usize, UsbLinkError> {
        self.handle
            .write_bulk(self.endpoint_out, data, timeout)
            .map_err(from_rusb)
    }
}

impl Drop for RusbLink {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.interface);
    }
}

/// Opens the configured device on a blocking thread and starts its bridge.
pub async fn open(config: &UsbConfig) -> Result<UsbStream, TransportError> {
    let config = config.clone();
    let link = tokio::task::spawn_blocking(move || RusbLink::open(&config))
        .await
        .map_err(|e| TransportError::Usb(format!("opening thread failed: {e}")))??;
    UsbStream::spawn(link)
        .map_err(|e| TransportError::Usb(format!("starting the bridge thread: {e}")))
}

/// A USB device found on this machine (`rfidgw devices`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsbDeviceEntry {
    /// Bus number.
    pub bus: u8,
    /// Address on the bus.
    pub address: u8,
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Manufacturer string, when the device could be opened to read it.
    pub manufacturer: Option<String>,
    /// Product string, when readable.
    pub product: Option<String>,
    /// Serial number, when readable.
    pub serial_number: Option<String>,
}

/// Lists USB devices, or says why libusb cannot (no USB bus, no permission).
pub fn list_devices() -> Result<Vec<UsbDeviceEntry>, TransportError> {
    let context = rusb::Context::new().map_err(|e| usb_error("libusb cannot start", e))?;
    let devices = context
        .devices()
        .map_err(|e| usb_error("listing devices", e))?;
    let mut entries = Vec::new();
    for device in devices.iter() {
        let Ok(descriptor) = device.device_descriptor() else {
            continue;
        };
        let mut entry = UsbDeviceEntry {
            bus: device.bus_number(),
            address: device.address(),
            vid: descriptor.vendor_id(),
            pid: descriptor.product_id(),
            manufacturer: None,
            product: None,
            serial_number: None,
        };
        if let Ok(handle) = device.open() {
            entry.manufacturer = handle.read_manufacturer_string_ascii(&descriptor).ok();
            entry.product = handle.read_product_string_ascii(&descriptor).ok();
            entry.serial_number = handle.read_serial_number_string_ascii(&descriptor).ok();
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Replays recorded IN transfers and records OUT transfers.
    struct Recorded {
        reads: VecDeque<Result<Vec<u8>, UsbLinkError>>,
        written: Arc<Mutex<Vec<Vec<u8>>>>,
        max_write: usize,
    }

    impl UsbLink for Recorded {
        fn read(&mut self, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbLinkError> {
            match self.reads.pop_front() {
                Some(Ok(data)) => {
                    buf[..data.len()].copy_from_slice(&data);
                    Ok(data.len())
                }
                Some(Err(e)) => Err(e),
                None => {
                    // An idle device: the real call blocks for the timeout, then times out.
                    std::thread::yield_now();
                    Err(UsbLinkError::Timeout)
                }
            }
        }

        fn write(&mut self, data: &[u8], _timeout: Duration) -> Result<usize, UsbLinkError> {
            let n = data.len().min(self.max_write);
            self.written.lock().unwrap().push(data[..n].to_vec());
            Ok(n)
        }
    }

    #[tokio::test]
    async fn recorded_in_transfers_arrive_as_one_byte_stream_and_writes_reach_out() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let link = Recorded {
            reads: VecDeque::from([
                Err(UsbLinkError::Timeout),
                Ok(vec![0x06, 0x00, 0xB0]),
                Ok(vec![]),
                Ok(vec![0x01, 0x5C, 0x63]),
            ]),
            written: written.clone(),
            max_write: 4,
        };
        let mut stream = UsbStream::spawn(link).unwrap();
        stream
            .write_all(&[0x07, 0xFF, 0xB0, 0x01, 0x00, 0x1C, 0x56])
            .await
            .unwrap();
        let mut got = [0u8; 6];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x06, 0x00, 0xB0, 0x01, 0x5C, 0x63]);
        // The recorded OUT endpoint takes at most 4 bytes a transfer: the bridge sends the rest.
        let out = loop {
            let out: Vec<u8> = written.lock().unwrap().concat();
            if out.len() == 7 {
                break out;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(out, [0x07, 0xFF, 0xB0, 0x01, 0x00, 0x1C, 0x56]);
    }

    #[tokio::test]
    async fn an_unplugged_device_is_a_read_error_not_a_hang() {
        let link = Recorded {
            reads: VecDeque::from([Ok(vec![0xAA]), Err(UsbLinkError::Disconnected)]),
            written: Arc::default(),
            max_write: 64,
        };
        let mut stream = UsbStream::spawn(link).unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
        let err = stream.read(&mut one).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }

    #[test]
    fn listing_without_a_usb_bus_is_an_error_or_a_list_never_a_panic() {
        match list_devices() {
            Ok(devices) => assert!(
                devices
                    .iter()
                    .all(|d| d.bus > 0 || d.address > 0 || d.vid > 0)
            ),
            Err(e) => assert!(e.to_string().contains("usb"), "{e}"),
        }
    }

    #[test]
    fn usb_ids_parse_from_hex_text_or_numbers() {
        let cfg: UsbConfig = toml::from_str(
            "vendor_id = \"0x0AB1\"\nproduct_id = 513\nendpoint_in = \"81\"\nendpoint_out = 2\nin_kind = \"interrupt\"",
        )
        .unwrap();
        assert_eq!((cfg.vendor_id, cfg.product_id), (0x0AB1, 513));
        assert_eq!((cfg.endpoint_in, cfg.endpoint_out), (0x81, 0x02));
        assert_eq!(cfg.in_kind, UsbEndpointKind::Interrupt);
        let err = toml::from_str::<UsbConfig>(
            "vendor_id = \"xyz\"\nproduct_id = 1\nendpoint_in = 1\nendpoint_out = 2",
        )
        .unwrap_err();
        assert!(err.to_string().contains("xyz"), "{err}");
    }
}
