//! A network FEIG reader (ISC.LR/MR on port 10001) simulated as a loopback TCP server.

use std::time::Duration;

use rfidgw_driver::{Device, DeviceEvent, DeviceEventSink, Uid};
use rfidgw_feig::{FeigDevice, FeigSettings, FeigSimulator, SimHandle, VirtualTag};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_network_reader_over_tcp_delivers_tag_reads() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = SimHandle::default();
    sim.insert_tag(VirtualTag::new(Uid::from_hex("E004010031269117").unwrap()));
    let server_sim = sim.clone();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        FeigSimulator::from_handle(server_sim).serve(socket).await
    });

    let settings: FeigSettings = toml::from_str(&format!(
        "[transport]\nkind = \"tcp\"\naddr = \"{addr}\"\n[poll]\npoll_interval_ms = 20\nmemory_blocks = 1"
    ))
    .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        Box::new(FeigDevice::new(settings).unwrap())
            .run(DeviceEventSink::new("lr-1", tx), cancel.clone()),
    );
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let DeviceEvent::TagArrived(read) = rx.recv().await.unwrap().event {
                return read;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(read.uid.to_string(), "E004010031269117");
    assert_eq!(read.memory.map(|m| m.len()), Some(4));
    cancel.cancel();
    task.await.unwrap().unwrap();
}
