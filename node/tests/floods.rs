//! Floods on loopback against a real daemon (issue 17, item 4): hundreds of raw TCP
//! connections from another address, some dripping a byte at a time into the handshake, and a
//! stranger's burst of requests. The daemon must keep the number it holds and its memory
//! bounded, drop the drips, stay up, and still serve a grantee's sync during the flood. Figures
//! are printed (`-- --nocapture`), and only bounds are asserted, never times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

mod common;

use common::{Daemon, Pair, add_text, grant, hearth, ok, stranger, sync_in};
use hearth_sync::protocol::{Message, Notify, encode};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// How many connections the flood opens, and how many of them drip.
const FLOOD: usize = 400;
const DRIPS: usize = 64;

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A TCP connection to `to` from 127.0.0.2 (another address than the grantee's, as a flood
/// from elsewhere would be; the per-address limit is tested by the network tests).
fn connect_from_elsewhere(to: SocketAddr) -> Option<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).ok()?;
    bind(
        &fd,
        &SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0)),
    )
    .ok()?;
    connect(&fd, &to).ok()?;
    Some(TcpStream::from(fd))
}

/// Whether the daemon has closed `s` (end of file or reset) rather than still holding it.
fn closed_by_peer(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the daemon's side of the handshake; keep reading
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_connection_flood_slow_drips_and_a_request_burst_are_bounded_and_a_grantee_is_served() {
    let pair = Pair::new("Dr Gee");
    let d = Daemon::start(&pair.p, Some("/ip4/127.0.0.1/tcp/0"));
    let granted = grant(&pair.p, &pair.gp, "notes", "append", "1d");
    ok(&hearth(
        &pair.g,
        &["accept", granted["token"].as_str().unwrap()],
    ));
    sync_in(&pair.g, Some(&pair.pp));
    let listen: libp2p::Multiaddr = d.file()["listen_addrs"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let port = listen
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP port");
    let to = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));

    // The same sync, unflooded: the baseline of this run.
    add_text(&pair.g, Some(&pair.rid), "notes", "before the flood");
    let t = Instant::now();
    sync_in(&pair.g, Some(&pair.pp));
    let quiet_ms = t.elapsed().as_millis();
    let rss_before = rss_kib(d.pid());

    // The flood: FLOOD connections held open, the first DRIPS writing a byte every 100 ms.
    let flood = std::thread::spawn(move || {
        let mut conns: Vec<TcpStream> = (0..FLOOD)
            .filter_map(|_| connect_from_elsewhere(to))
            .collect();
        let opened = conns.len();
        for _ in 0..50 {
            for c in conns.iter_mut().take(DRIPS) {
                let _ = c.write_all(b"/");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (opened, conns)
    });
    // A stranger's burst of requests (small notifications, answered the same for anyone).
    let (peer, addr) = (pair.pp.parse().unwrap(), listen.clone());
    let record = pair.rid.parse().unwrap();
    let burst = std::thread::spawn(move || {
        let frame = encode(&Message::Notify(Notify {
            record,
            push: Vec::new(),
        }));
        stranger::send(peer, addr, vec![frame; 200])
    });

    // Meanwhile the grantee writes and syncs, and must be served.
    add_text(
        &pair.g,
        Some(&pair.rid),
        "notes",
        "written during the flood",
    );
    let t = Instant::now();
    sync_in(&pair.g, Some(&pair.pp));
    let flooded_ms = t.elapsed().as_millis();

    let answers = burst.join().expect("the burst thread");
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    let (opened, conns) = flood.join().expect("the flood thread");
    let rss_during = rss_kib(d.pid());
    // Give the daemon its handshake timeout to drop what it still holds.
    let mut held = conns.iter().filter(|c| !closed_by_peer(c)).count();
    let waited = Instant::now();
    while held > 0 && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        held = conns.iter().filter(|c| !closed_by_peer(c)).count();
    }
    let rss_after = rss_kib(d.pid());
    eprintln!(
        "flood: {opened} of {FLOOD} connections opened ({DRIPS} dripping), {held} still held after {} ms more; \
         stranger burst: {answered}/200 answered; grantee sync {quiet_ms} ms quiet, {flooded_ms} ms flooded; \
         daemon RSS {rss_before} KiB before, {rss_during} KiB during, {rss_after} KiB after",
        waited.elapsed().as_millis()
    );

    // The daemon is up, has the grantee's entry, and holds nothing of the flood.
    let shown = common::show(&pair.p, &pair.rid);
    assert!(shown.contains("written during the flood"), "{shown}");
    assert_eq!(held, 0, "the daemon still holds flood connections");
    assert!(
        rss_during.saturating_sub(rss_before) < 64 * 1024,
        "the flood grew the daemon by {} KiB",
        rss_during - rss_before
    );
    d.stop();
}
