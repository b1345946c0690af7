//! `rfidgw devices`: lists serial ports (with USB ids where known) and USB devices, so an
//! installer can find the stable `/dev/serial/by-id/…` name to put in the config.
//!
//! Never panics without a USB bus: libusb is started with `rusb::Context::new()`, and a
//! failure is printed as a "no USB bus (…)" line (or `usb.error` with `--json`).

use std::process::ExitCode;

use rfidgw_driver::transport::serial::{self, SerialPortEntry};
use rfidgw_driver::transport::usb::{self, UsbDeviceEntry};
use serde::Serialize;

/// Arguments of `rfidgw devices`.
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Listing {
    serial_ports: Vec<SerialPortEntry>,
    usb: UsbListing,
}

#[derive(Debug, Serialize)]
struct UsbListing {
    devices: Vec<UsbDeviceEntry>,
    /// Why USB devices could not be listed (no USB bus, no permission).
    error: Option<String>,
}

fn listing() -> Listing {
    let usb = match usb::list_devices() {
        Ok(devices) => UsbListing {
            devices,
            error: None,
        },
        Err(e) => UsbListing {
            devices: Vec::new(),
            error: Some(e.to_string()),
        },
    };
    Listing {
        serial_ports: serial::list_ports(),
        usb,
    }
}

fn usb_ids(vid: Option<u16>, pid: Option<u16>) -> String {
    match (vid, pid) {
        (Some(v), Some(p)) => format!("{v:04x}:{p:04x}"),
        _ => "-".into(),
    }
}

fn text(listing: &Listing) -> String {
    let mut lines = vec!["Serial ports:".to_owned()];
    if listing.serial_ports.is_empty() {
        lines.push("  (none found)".into());
    }
    for port in &listing.serial_ports {
        let words: Vec<&str> = [&port.manufacturer, &port.product, &port.serial_number]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
        lines.push(format!(
            "  {}  {}  {}",
            port.path.display(),
            usb_ids(port.vid, port.pid),
            words.join(" ")
        ));
        lines.extend(
            port.by_id
                .iter()
                .map(|link| format!("      by-id: {}", link.display())),
        );
    }
    lines.push("USB devices:".into());
    if let Some(error) = &listing.usb.error {
        lines.push(format!("  no USB bus ({error})"));
    } else if listing.usb.devices.is_empty() {
        lines.push("  (none found)".into());
    }
    for device in &listing.usb.devices {
        let words: Vec<&str> = [&device.manufacturer, &device.product, &device.serial_number]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
        lines.push(format!(
            "  bus {:03} device {:03}  {:04x}:{:04x}  {}",
            device.bus,
            device.address,
            device.vid,
            device.pid,
            words.join(" ")
        ));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// Lists devices.
pub fn run(args: &DevicesArgs) -> anyhow::Result<ExitCode> {
    let listing = listing();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", text(&listing));
    }
    Ok(ExitCode::SUCCESS)
}
