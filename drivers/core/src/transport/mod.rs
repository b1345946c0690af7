//! Transports: one `AsyncRead + AsyncWrite + Unpin + Send` shape for every way a reader is
//! attached (serial, TCP, USB bulk/interrupt, or the driver's in-process simulator).
//!
//! A driver is generic over the byte stream; the daemon picks the transport at the edge,
//! from a [`TransportConfig`] in the device's settings:
//!
//! ```toml
//! [devices.settings.transport]
//! kind = "serial"
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XYZ-if00-port0"
//! baud = 38400
//! parity = "even"
//! ```
//!
//! Reconnecting is not done here: when a transport breaks, the driver's `run` returns an
//! error and the daemon's supervisor builds the device again after a capped backoff. Opening
//! by the stable `/dev/serial/by-id/…` name is what lets a re-plugged USB-serial adapter
//! (which may come back as another `ttyUSBn`) be found again.

pub mod serial;
pub mod tcp;
pub mod usb;

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

pub use serial::{
    DataBits, LineDefaults, Parity, PtyPair, SerialConfig, SerialPortEntry, StopBits,
};
pub use tcp::TcpConfig;
pub use usb::{UsbConfig, UsbDeviceEntry, UsbEndpointKind};

use crate::DeviceError;

/// Any byte stream a driver can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// An opened transport, whatever its kind.
pub type BoxTransport = Box<dyn Transport>;

/// How a device is attached: the `transport` table of a device's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TransportConfig {
    /// A serial port (RS-232 or USB-serial) through tokio-serial.
    Serial(SerialConfig),
    /// A network reader over TCP (FEIG network readers listen on port 10001).
    Tcp(TcpConfig),
    /// A vendor-class USB device, bridged from rusb's blocking calls on its own thread.
    Usb(UsbConfig),
    /// The driver's own in-process simulator over an in-memory stream (demo, tests).
    Simulator {},
}

impl fmt::Display for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serial(c) => write!(f, "serial {}", c.path.display()),
            Self::Tcp(c) => write!(f, "tcp {}", c.addr),
            Self::Usb(c) => write!(f, "usb {:04x}:{:04x}", c.vendor_id, c.product_id),
            Self::Simulator {} => f.write_str("simulator"),
        }
    }
}

/// Why a transport could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The serial port could not be opened or configured.
    #[error("serial port {path}: {source}")]
    Serial {
        /// The configured path.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The TCP connection failed or timed out.
    #[error("tcp {addr}: {source}")]
    Tcp {
        /// The configured address.
        addr: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// libusb could not start, the device is absent, or a USB call failed.
    #[error("usb: {0}")]
    Usb(String),
    /// A setting has a value the transport cannot use.
    #[error("transport setting `{key}`: {message}")]
    Config {
        /// The settings key, e.g. `data_bits`.
        key: &'static str,
        /// What is wrong and what would work.
        message: String,
    },
    /// `kind = "simulator"` was given for a driver that has no simulator.
    #[error("this driver has no simulator; use kind = \"serial\", \"tcp\" or \"usb\"")]
    NoSimulator,
}

impl From<TransportError> for DeviceError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Serial { path, source } => DeviceError::Transport(io::Error::new(
                source.kind(),
                format!("serial port {path}: {source}"),
            )),
            TransportError::Tcp { addr, source } => DeviceError::Transport(io::Error::new(
                source.kind(),
                format!("tcp {addr}: {source}"),
            )),
            TransportError::Usb(message) => {
                DeviceError::Transport(io::Error::other(format!("usb: {message}")))
            }
            config @ (TransportError::Config { .. } | TransportError::NoSimulator) => {
                DeviceError::Config(config.to_string())
            }
        }
    }
}

/// Opens the transport `config` describes.
///
/// `defaults` fills the serial line settings the config leaves out (each protocol has its
/// own: FEIG 38400 8E1, 3M 19200 8N1). `simulator` is called for `kind = "simulator"`: the
/// driver starts its simulator there and returns its end of the stream.
pub async fn open(
    config: &TransportConfig,
    defaults: LineDefaults,
    simulator: impl FnOnce() -> Result<BoxTransport, TransportError>,
) -> Result<BoxTransport, TransportError> {
    match config {
        TransportConfig::Serial(serial) => Ok(Box::new(serial::open(serial, defaults)?)),
        TransportConfig::Tcp(tcp) => Ok(Box::new(tcp::open(tcp).await?)),
        TransportConfig::Usb(usb) => Ok(Box::new(usb::open(usb).await?)),
        TransportConfig::Simulator {} => simulator(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses_from_its_toml_table() {
        let serial: TransportConfig = toml::from_str(
            "kind = \"serial\"\npath = \"/dev/serial/by-id/usb-FTDI-if00\"\nbaud = 38400\nparity = \"even\"",
        )
        .unwrap();
        let TransportConfig::Serial(serial) = serial else {
            panic!("not serial: {serial:?}")
        };
        assert_eq!(serial.baud, Some(38400));
        assert_eq!(serial.parity, Some(Parity::Even));

        let tcp: TransportConfig =
            toml::from_str("kind = \"tcp\"\naddr = \"10.0.0.5:10001\"").unwrap();
        assert_eq!(tcp.to_string(), "tcp 10.0.0.5:10001");

        let usb: TransportConfig = toml::from_str(
            "kind = \"usb\"\nvendor_id = \"0AB1\"\nproduct_id = 2\nendpoint_in = \"81\"\nendpoint_out = \"02\"",
        )
        .unwrap();
        assert_eq!(usb.to_string(), "usb 0ab1:0002");

        let sim: TransportConfig = toml::from_str("kind = \"simulator\"").unwrap();
        assert_eq!(sim, TransportConfig::Simulator {});
    }

    #[test]
    fn unknown_kinds_and_keys_are_refused_by_name() {
        for (text, needle) in [
            ("kind = \"carrier-pigeon\"", "carrier-pigeon"),
            ("kind = \"tcp\"\naddr = \"x:1\"\nspeed = 3", "speed"),
            (
                "kind = \"serial\"\npath = \"/dev/x\"\nbaudrate = 3",
                "baudrate",
            ),
            ("kind = \"simulator\"\ntags = 1", "tags"),
        ] {
            let err = toml::from_str::<TransportConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn simulator_kind_asks_the_driver_for_its_stream() {
        let config = TransportConfig::Simulator {};
        let opened = open(&config, LineDefaults::default(), || {
            let (a, _b) = tokio::io::duplex(64);
            Ok(Box::new(a))
        })
        .await;
        assert!(opened.is_ok());
        let refused = open(&config, LineDefaults::default(), || {
            Err(TransportError::NoSimulator)
        })
        .await;
        assert!(matches!(refused, Err(TransportError::NoSimulator)));
    }
}
