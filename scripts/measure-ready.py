#!/usr/bin/env python3
# Measures start -> READY=1 (sd_notify) of the rfidgw binary over N runs on a fresh store,
# and the RSS after 10 s of the first run. Usage:
#   cargo build --release && python3 scripts/measure-ready.py target/release/rfidgw config/demo.toml 20
import os, socket, subprocess, time, sys, tempfile, signal
binary, config = sys.argv[1], sys.argv[2]
results = []
for i in range(int(sys.argv[3])):
    d = tempfile.mkdtemp()
    sock_path = os.path.join(d, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sock_path); s.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, RFIDGW__DAEMON__DATA_DIR=d, RFIDGW__API__LISTEN="127.0.0.1:0", RFIDGW__DAEMON__LOG_LEVEL="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "run", "--config", config], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        msg = s.recv(4096).decode()
        if "READY=1" in msg.splitlines():
            break
    results.append((time.perf_counter() - t0) * 1000)
    if i == 0:
        time.sleep(10)  # idle-ish: demo devices polling, ILS connected
        rss = [l for l in open(f"/proc/{p.pid}/status") if l.startswith(("VmRSS", "VmHWM"))]
        print("after 10 s:", " ".join(x.split()[0] + x.split()[1] + "kB" for x in rss))
    p.send_signal(signal.SIGTERM); p.wait()
    assert p.returncode == 0, p.returncode
results.sort()
print(f"start->READY ms over {len(results)} runs: min {results[0]:.1f} median {results[len(results)//2]:.1f} max {results[-1]:.1f}")
