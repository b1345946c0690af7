//! Serial ports (RS-232, USB-serial) through tokio-serial, and the port listing for
//! `rfidgw devices`.
//!
//! Settings are applied, never asserted on read-back: on a pty the parity is silently
//! dropped and the modem lines fail with ENOTTY (PROTOCOLS.md §6), and a driver must work
//! there as well as on a real UART.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::TransportError;

/// Parity of a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity (FEIG ISO-Host's default, PROTOCOLS.md §4.2).
    Even,
}

/// Data bits per character.
pub type DataBits = u8;
/// Stop bits per character.
pub type StopBits = u8;

/// The `serial` transport's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// Device path. Prefer the stable `/dev/serial/by-id/…` name: it survives re-plugging,
    /// where `/dev/ttyUSB0` may come back as `/dev/ttyUSB1`.
    pub path: PathBuf,
    /// Baud rate; the protocol's default when absent.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Parity; the protocol's default when absent.
    #[serde(default)]
    pub parity: Option<Parity>,
    /// Data bits (5 to 8); the protocol's default when absent.
    #[serde(default)]
    pub data_bits: Option<DataBits>,
    /// Stop bits (1 or 2); the protocol's default when absent.
    #[serde(default)]
    pub stop_bits: Option<StopBits>,
}

/// A protocol's serial line defaults, used for the settings a config leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineDefaults {
    /// Baud rate.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// Data bits.
    pub data_bits: DataBits,
    /// Stop bits.
    pub stop_bits: StopBits,
}

impl Default for LineDefaults {
    /// 9600 8N1, the common ground of serial devices.
    fn default() -> Self {
        Self {
            baud: 9600,
            parity: Parity::None,
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

/// The line settings after defaults are applied, checked.
fn line(
    config: &SerialConfig,
    defaults: LineDefaults,
) -> Result<tokio_serial::SerialPortBuilder, TransportError> {
    let baud = config.baud.unwrap_or(defaults.baud);
    if baud == 0 {
        return Err(TransportError::Config {
            key: "baud",
            message: "0 is not a baud rate (FEIG readers default to 38400)".into(),
        });
    }
    let data_bits = match config.data_bits.unwrap_or(defaults.data_bits) {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        8 => tokio_serial::DataBits::Eight,
        other => {
            return Err(TransportError::Config {
                key: "data_bits",
                message: format!("{other} is not 5, 6, 7 or 8"),
            });
        }
    };
    let stop_bits = match config.stop_bits.unwrap_or(defaults.stop_bits) {
        1 => tokio_serial::StopBits::One,
        2 => tokio_serial::StopBits::Two,
        other => {
            return Err(TransportError::Config {
                key: "stop_bits",
                message: format!("{other} is not 1 or 2"),
            });
        }
    };
    let parity = match config.parity.unwrap_or(defaults.parity) {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    Ok(tokio_serial::new(config.path.to_string_lossy(), baud)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .flow_control(tokio_serial::FlowControl::None))
}

/// Opens the port exclusively with the configured line settings.
///
/// The path may be a symlink (`/dev/serial/by-id/…`); the OS follows it at open time, so a
/// re-plugged adapter is found under its new `ttyUSBn` name.
pub fn open(config: &SerialConfig, defaults: LineDefaults) -> Result<SerialStream, TransportError> {
    let path = config.path.display().to_string();
    let builder = line(config, defaults)?;
    let mut stream = builder
        .open_native_async()
        .map_err(|e| TransportError::Serial {
            path: path.clone(),
            source: e.into(),
        })?;
    // Exclusive: a second process (or a stray `screen`) on the same port would steal bytes
    // from the middle of frames.
    stream
        .set_exclusive(true)
        .map_err(|e| TransportError::Serial {
            path,
            source: e.into(),
        })?;
    Ok(stream)
}

/// A pseudo-terminal pair standing in for a serial cable (simulators and tests).
///
/// A simulator serves the master end; a driver opens [`PtyPair::slave_path`] through the
/// `serial` transport, so the real serial code path runs (PROTOCOLS.md §6). The pair's own
/// slave descriptor is closed at once (it holds the port's exclusive lock): until a driver
/// opens the path, reads on the master fail with EIO, which a simulator waits out.
#[derive(Debug)]
pub struct PtyPair {
    master: SerialStream,
    slave_path: PathBuf,
}

impl PtyPair {
    /// Opens a new pair.
    pub fn open() -> Result<Self, TransportError> {
        use tokio_serial::SerialPort;
        let error = |e: tokio_serial::Error| TransportError::Serial {
            path: "pty pair".into(),
            source: e.into(),
        };
        let (master, mut slave) = SerialStream::pair().map_err(error)?;
        slave.set_exclusive(false).map_err(error)?;
        let slave_path = slave
            .name()
            .map(PathBuf::from)
            .ok_or(TransportError::Serial {
                path: "pty pair".into(),
                source: std::io::Error::other("the pty slave has no name"),
            })?;
        drop(slave);
        Ok(Self { master, slave_path })
    }

    /// The device path a driver opens (`/dev/pts/N`).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// The master end.
    pub fn into_master(self) -> SerialStream {
        self.master
    }
}

/// A serial port found on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SerialPortEntry {
    /// The device node, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Stable `/dev/serial/by-id/…` names that point at it (use these in config).
    pub by_id: Vec<PathBuf>,
    /// USB vendor id, for USB-serial adapters.
    pub vid: Option<u16>,
    /// USB product id, for USB-serial adapters.
    pub pid: Option<u16>,
    /// USB serial number, when the adapter has one.
    pub serial_number: Option<String>,
    /// USB manufacturer string.
    pub manufacturer: Option<String>,
    /// USB product string.
    pub product: Option<String>,
}

/// Lists serial ports: what the OS enumerates, plus `/dev/serial/by-id` links and the usual
/// `/dev/tty{USB,ACM,AMA}*` nodes (the enumeration can miss them without libudev).
pub fn list_ports() -> Vec<SerialPortEntry> {
    let mut entries: Vec<SerialPortEntry> = Vec::new();
    if let Ok(ports) = tokio_serial::available_ports() {
        for port in ports {
            let mut entry = SerialPortEntry {
                path: PathBuf::from(&port.port_name),
                by_id: Vec::new(),
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            };
            if let tokio_serial::SerialPortType::UsbPort(usb) = port.port_type {
                entry.vid = Some(usb.vid);
                entry.pid = Some(usb.pid);
                entry.serial_number = usb.serial_number;
                entry.manufacturer = usb.manufacturer;
                entry.product = usb.product;
            }
            entries.push(entry);
        }
    }
    for path in scan_dev(Path::new("/dev")) {
        if !entries.iter().any(|e| e.path == path) {
            entries.push(SerialPortEntry {
                path,
                by_id: Vec::new(),
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            });
        }
    }
    for (link, target) in by_id_links(Path::new("/dev/serial/by-id")) {
        match entries.iter_mut().find(|e| same_file(&e.path, &target)) {
            Some(entry) => entry.by_id.push(link),
            None => entries.push(SerialPortEntry {
                path: target,
                by_id: vec![link],
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            }),
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `/dev/ttyUSB*`, `/dev/ttyACM*`, `/dev/ttyAMA*` under `dev`.
fn scan_dev(dev: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            ["ttyUSB", "ttyACM", "ttyAMA"].iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The symlinks in `dir` with the device each resolves to.
fn by_id_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut links: Vec<(PathBuf, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let link = e.path();
            let target = link.canonicalize().ok()?;
            Some((link, target))
        })
        .collect();
    links.sort();
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str) -> SerialConfig {
        SerialConfig {
            path: PathBuf::from(path),
            baud: None,
            parity: None,
            data_bits: None,
            stop_bits: None,
        }
    }

    #[test]
    fn impossible_line_settings_are_refused_by_key() {
        let cases = [
            (
                SerialConfig {
                    data_bits: Some(9),
                    ..config("/dev/x")
                },
                "data_bits",
            ),
            (
                SerialConfig {
                    stop_bits: Some(3),
                    ..config("/dev/x")
                },
                "stop_bits",
            ),
            (
                SerialConfig {
                    baud: Some(0),
                    ..config("/dev/x")
                },
                "baud",
            ),
        ];
        for (cfg, key) in cases {
            let err = open(&cfg, LineDefaults::default()).unwrap_err();
            assert!(
                matches!(err, TransportError::Config { key: k, .. } if k == key),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_port_names_its_path() {
        let err = open(
            &config("/dev/serial/by-id/no-such-reader"),
            LineDefaults::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/dev/serial/by-id/no-such-reader"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_pty_opens_by_a_symlink_with_parity_applied_and_carries_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let pty = PtyPair::open().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("usb-FEIG_reader-if00");
        std::os::unix::fs::symlink(pty.slave_path(), &link).unwrap();
        let mut master = pty.into_master();

        let cfg = SerialConfig {
            parity: Some(Parity::Even),
            ..config(link.to_str().unwrap())
        };
        let mut port = open(
            &cfg,
            LineDefaults {
                baud: 38400,
                ..LineDefaults::default()
            },
        )
        .unwrap();
        port.write_all(&[0x07, 0xFF, 0xB0]).await.unwrap();
        let mut got = [0u8; 3];
        master.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x07, 0xFF, 0xB0]);
    }

    #[test]
    fn listing_ports_never_panics_here() {
        let ports = list_ports();
        assert!(ports.windows(2).all(|w| w[0].path <= w[1].path));
    }

    #[test]
    fn dev_scan_takes_only_numbered_usb_acm_and_ama_ttys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in [
            "ttyUSB0", "ttyACM12", "ttyAMA1", "ttyS0", "ttyUSB", "ttyUSBx",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let found: Vec<String> = scan_dev(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["ttyACM12", "ttyAMA1", "ttyUSB0"]);
    }
}
