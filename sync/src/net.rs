//! The libp2p adapter (feature `libp2p`, on by default): transports, the `/hearth/sync/1`
//! request-response protocol, identify, ping and deliberate connection limits.
//!
//! Nothing here decides anything about records: the sans-I/O session in
//! [`crate::session`] does. This module only moves its messages between authenticated peers
//! and enforces the limits a stranger could otherwise push on us:
//!
//! - **Identity.** The node's libp2p keypair *is* its ed25519 device key ([`keypair`]), so the
//!   Noise-authenticated `PeerId` of a connection is the [`PeerKey`] a capability names as its
//!   audience ([`peer_key`], [`peer_id`]). Nobody can present a grant for a key they do not
//!   hold: the transport already proved the key.
//! - **Frames.** [`codec::FrameCodec`] length-prefixes each message and refuses frames above
//!   [`MAX_FRAME`] before reading them; garbage closes the stream, never the process.
//! - **Limits.** [`NetConfig`] sets connections per peer, in total and pending, request
//!   timeouts, concurrent streams per connection and the idle timeout; see its defaults.
//!   [`inbound`] bounds the bytes of frames being read from everyone at once (checked before
//!   a body is read), gives peers known to no record far smaller frames and fewer streams, and
//!   rate-limits new connections per IP.
//! - **Transports.** TCP and (feature `quic`) QUIC, both with Noise and Yamux (QUIC has its
//!   own TLS 1.3 handshake with the same key), and libp2p's circuit relay v2 client, so a
//!   node behind NAT is reached through a relay (`/p2p-circuit` addresses) and upgrades to a
//!   direct connection with DCUtR when it can; [`memory_swarm`] builds an in-memory swarm for
//!   tests and in-process examples.
//! - **Reachability.** AutoNAT (v1) asks only the servers the node adds (its records'
//!   relays) whether they can dial it back; only relay nodes ([`NetConfig::relay_server`])
//!   answer such requests, serve circuits ([`relay_server_config`]: few, short and small:
//!   record data never goes through a circuit) and run Kademlia in server mode.
//! - **Relay network.** Relays of different organisations form a private Kademlia network on
//!   [`KAD_PROTOCOL`] (never the public IPFS DHT), in which each relay announces itself as a
//!   provider of the [`locator`] of each record it keeps; other nodes run Kademlia as clients
//!   only, to find those relays. Its stores are bounded ([`kad_store_config`]).
//!
//! ```
//! use hearth_sync::net::{peer_id, peer_key};
//! use libp2p::identity::{Keypair, ed25519};
//! let secret = ed25519::SecretKey::try_from_bytes([7u8; 32]).unwrap();
//! let id = Keypair::from(ed25519::Keypair::from(secret)).public().to_peer_id();
//! let key = peer_key(&id).unwrap();          // a hearth_core::ids::PeerKey
//! assert_eq!(key.to_string(), id.to_string()); // same text form
//! assert_eq!(peer_id(&key), Some(id));
//! ```

pub mod codec;
pub mod inbound;
pub mod notify;

use codec::{FrameCodec, WireMessage};
use hearth_core::ids::PeerKey;
use hearth_core::keys::Identity;
use libp2p::core::transport::{MemoryTransport, Transport, upgrade::Version};
use libp2p::identity::{Keypair, ed25519};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Multiaddr, autonat, dcutr, kad, relay, tcp, yamux};
use libp2p::{
    PeerId, StreamProtocol, Swarm, SwarmBuilder, connection_limits, identify, noise, ping,
};
use std::time::Duration;

/// The sync protocol's name on the wire.
pub const PROTOCOL: &str = crate::protocol::PROTOCOL;

/// The largest frame accepted or sent on `/hearth/sync/1`.
pub const MAX_FRAME: usize = crate::protocol::MAX_MESSAGE;

/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/hearth/1";

/// The relays' private Kademlia network's protocol name: Hearth relays never speak the public
/// IPFS DHT (`/ipfs/kad/1.0.0`), so nothing of theirs is announced there.
pub const KAD_PROTOCOL: &str = "/hearth/kad/1";

/// The domain of [`locator`].
pub const LOCATOR_DOMAIN: &[u8] = b"hearth/locate/v1";

/// The Kademlia key under which the relays keeping `record` announce themselves:
/// `SHA-256("hearth/locate/v1" ‖ record id)`. Anyone who knows the record id can compute it
/// and learn which relays keep the record (their peer ids and addresses), and nothing else;
/// someone who does not know the id cannot tell which record a key stands for.
pub fn locator(record: &hearth_core::ids::RecordId) -> kad::RecordKey {
    kad::RecordKey::new(&hearth_core::crypto::sha256(&[LOCATOR_DOMAIN, &record.0]))
}

/// Errors of the adapter (never about a peer's data: those close the peer's stream).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The device key could not be turned into a libp2p keypair (a damaged keystore).
    #[error("the device key is not a valid ed25519 key")]
    BadKey,
    /// A transport could not be set up (local configuration or the operating system).
    #[error("cannot set up the network: {0}")]
    Transport(String),
    /// Another process (or another listener of ours) already holds this address.
    #[error("{0} is already in use by another process")]
    AddressInUse(String),
    /// The address could not be listened on.
    #[error("cannot listen on {0}: {1}")]
    Listen(String, String),
}

/// Limits and timeouts. The defaults are deliberate; each says why.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// A request without an answer after this long fails (the peer is gone or stalling).
    pub request_timeout: Duration,
    /// A connection with no open stream is closed after this long. Live sync keeps
    /// connections busy with periodic rounds, so this only reaps peers that went quiet.
    pub idle_timeout: Duration,
    /// Established connections per peer: one each way is enough (two nodes may dial each
    /// other at the same moment); more is a stranger hoarding our resources.
    pub max_established_per_peer: u32,
    /// Established connections in total.
    pub max_established_total: u32,
    /// Connections in the handshake phase, each way.
    pub max_pending: u32,
    /// Concurrent request streams per connection (each may hold up to one frame in memory).
    pub max_concurrent_streams: usize,
    /// The largest frame, both ways.
    pub max_frame: usize,
    /// The largest request frame from a peer known to no record here (not a patient device,
    /// not a grantee, not a known peer): a stranger has nothing big to say.
    pub max_frame_unknown: usize,
    /// Requests being read at once from one such peer, over all its connections.
    pub max_streams_unknown: usize,
    /// Bytes of frames being read at once from everyone: each frame reserves its announced
    /// length before its body is read, and is refused if the total would pass this.
    pub inbound_budget: usize,
    /// Bytes of frames one peer may have being read at once, over all its connections: one
    /// peer (a grantee turned hostile, dripping bodies until the stream timeout) cannot hold
    /// the whole budget and starve everyone else.
    pub inbound_per_peer: usize,
    /// Bytes of requests all strangers together may have being read at once: many stranger
    /// keys from many addresses cannot take the budget from the peers known to a record.
    pub inbound_strangers: usize,
    /// New inbound connections one IP address may open at once...
    pub conn_burst_per_ip: u32,
    /// ...and then one more per this interval.
    pub conn_every_per_ip: Duration,
    /// Discover peers on the local network with mDNS (feature `mdns`; announces this node).
    pub mdns: bool,
    /// Serve as an organisation relay's network side: circuit relay v2 (reservations and
    /// circuits within [`relay_server_config`]), AutoNAT dial-backs (throttled, below) and the
    /// relays' Kademlia network in server mode. Off for everyone else: they only ask.
    pub relay_server: bool,
    /// AutoNAT: the first reachability probe after start...
    pub autonat_boot_delay: Duration,
    /// ...and the next one while the answer is unknown or not yet confirmed.
    pub autonat_retry: Duration,
    /// AutoNAT servers: dial-back requests answered per second from everyone...
    pub autonat_clients_per_second: usize,
    /// ...and from one peer.
    pub autonat_per_peer: usize,
    /// Provider keys (records located) a relay's Kademlia store keeps, its own included.
    pub kad_max_keys: usize,
    /// Relays remembered as providers of one key.
    pub kad_providers_per_key: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_established_per_peer: 2,
            max_established_total: 256,
            max_pending: 64,
            max_concurrent_streams: 8,
            max_frame: MAX_FRAME,
            max_frame_unknown: 256 * 1024,
            max_streams_unknown: 2,
            // Four full frames: enough for a few big syncs at once, and a bound on what
            // 256 connections x 8 streams could otherwise demand (32 GiB).
            inbound_budget: 4 * MAX_FRAME,
            // One full frame each: a big push still fits, and it takes four hostile grantees
            // at once to spend the budget.
            inbound_per_peer: MAX_FRAME,
            // A quarter of the budget (each stranger's requests are small, at most 2 at once).
            inbound_strangers: MAX_FRAME,
            conn_burst_per_ip: 16,
            conn_every_per_ip: Duration::from_millis(500),
            mdns: false,
            relay_server: false,
            autonat_boot_delay: Duration::from_secs(5),
            autonat_retry: Duration::from_secs(30),
            autonat_clients_per_second: 8,
            autonat_per_peer: 2,
            kad_max_keys: 200_000,
            kad_providers_per_key: 8,
        }
    }
}

pub use behaviour::{Behaviour, BehaviourEvent};

/// The behaviour and the event enum its derive generates (whose variants mirror the fields).
#[allow(missing_docs)]
mod behaviour {
    use super::*;

    /// The node's network behaviour: limits first (they veto connections), then identify, ping,
    /// the sync protocol and, optionally, mDNS.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour<M: WireMessage> {
        /// Connection limits.
        pub limits: connection_limits::Behaviour,
        /// Per-IP connection rate, and the peer each connection's codec reads from (before
        /// `sync`: see [`inbound`]).
        pub gate: inbound::Gate,
        /// Identify: tells peers our listen addresses and learns theirs.
        pub identify: identify::Behaviour,
        /// Ping: keeps connections alive and measures round trips.
        pub ping: ping::Behaviour,
        /// `/hearth/sync/1`.
        pub sync: request_response::Behaviour<FrameCodec<M>>,
        /// `/hearth/store/1` (relays; [`crate::relay`]): the same frames and limits.
        pub store: request_response::Behaviour<FrameCodec<M>>,
        /// `/hearth/notify/1` ([`notify`]): `Notify` messages on streams held open.
        pub notify: libp2p_stream::Behaviour,
        /// Local-network discovery (off unless configured).
        #[cfg(feature = "mdns")]
        pub mdns: libp2p::swarm::behaviour::toggle::Toggle<libp2p::mdns::tokio::Behaviour>,
        /// Circuit relay v2 client: reservations on relays and `/p2p-circuit` dials. Always
        /// on in the swarms [`swarm`] and [`memory_swarm`] build (the transport hands it over
        /// after the behaviour is made).
        pub relay_client: Toggle<relay::client::Behaviour>,
        /// Circuit relay v2 server (relay nodes only).
        pub relay_server: Toggle<relay::Behaviour>,
        /// Direct connection upgrade through relay (hole punching).
        pub dcutr: dcutr::Behaviour,
        /// AutoNAT v1: asks the servers added (this node's relays) whether they can dial it
        /// back; answers only on relay nodes.
        pub autonat: autonat::v1::Behaviour,
        /// The relays' private Kademlia network: server mode on relays, client mode elsewhere.
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
    }

    impl<M: WireMessage> Behaviour<M> {
        /// The behaviour for `key` with `config`.
        pub fn new(key: &Keypair, config: &NetConfig) -> Result<Self, NetError> {
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(config.max_established_per_peer))
                .with_max_established(Some(config.max_established_total))
                .with_max_pending_incoming(Some(config.max_pending))
                .with_max_pending_outgoing(Some(config.max_pending));
            let inbound = inbound::Inbound::new(config);
            let sync = request_response::Behaviour::with_codec(
                FrameCodec::with_inbound(config.max_frame, inbound.clone()),
                [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(config.request_timeout)
                    .with_max_concurrent_streams(config.max_concurrent_streams),
            );
            let store = request_response::Behaviour::with_codec(
                FrameCodec::with_inbound(config.max_frame, inbound.clone()),
                [(
                    StreamProtocol::new(crate::relay::STORE_PROTOCOL),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(config.request_timeout)
                    .with_max_concurrent_streams(config.max_concurrent_streams),
            );
            #[cfg(feature = "mdns")]
            let mdns = if config.mdns {
                Some(
                    libp2p::mdns::tokio::Behaviour::new(
                        libp2p::mdns::Config::default(),
                        key.public().to_peer_id(),
                    )
                    .map_err(|e| NetError::Transport(format!("mdns: {e}")))?,
                )
            } else {
                None
            }
            .into();
            let local = key.public().to_peer_id();
            let relay_server = config
                .relay_server
                .then(|| relay::Behaviour::new(local, relay_server_config()));
            let autonat = autonat::v1::Behaviour::new(local, autonat_config(config));
            let mut kad = kad::Behaviour::with_config(
                local,
                kad::store::MemoryStore::with_config(local, kad_store_config(config)),
                kad_config(),
            );
            kad.set_mode(Some(if config.relay_server {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                gate: inbound::Gate::new(inbound, config),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                        .with_agent_version(format!("hearth/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                sync,
                store,
                notify: libp2p_stream::Behaviour::new(),
                #[cfg(feature = "mdns")]
                mdns,
                relay_client: None.into(),
                relay_server: relay_server.into(),
                dcutr: dcutr::Behaviour::new(local),
                autonat,
                kad,
            })
        }
    }
}

/// The circuit relay server's limits: a circuit only connects two peers (and lets DCUtR try
/// a direct connection); record data travels on `/hearth/store/1` or a direct connection.
/// A circuit lasts at most 2 minutes and carries at most 128 KiB each way (libp2p's
/// defaults); reservations and circuits are bounded per peer and in total, and rate-limited
/// per peer and per IP (libp2p's default limiters).
pub fn relay_server_config() -> relay::Config {
    relay::Config {
        max_reservations: 256,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(60 * 60),
        max_circuits: 32,
        max_circuits_per_peer: 4,
        max_circuit_duration: Duration::from_secs(2 * 60),
        max_circuit_bytes: 128 * 1024,
        ..relay::Config::default()
    }
}

/// AutoNAT v1: probes only the servers added explicitly (the node's relays), never any
/// connected peer; answers dial-back requests only when `config.relay_server` (everyone else
/// refuses them all). A server dials back only the requester's observed IP address (libp2p
/// replaces the IP of every address asked for), so it cannot be sent to probe third parties;
/// private addresses are allowed, since organisations' relays and their users may share a
/// private network.
fn autonat_config(config: &NetConfig) -> autonat::v1::Config {
    autonat::v1::Config {
        timeout: Duration::from_secs(15),
        boot_delay: config.autonat_boot_delay,
        retry_interval: config.autonat_retry,
        refresh_interval: Duration::from_secs(15 * 60),
        throttle_server_period: Duration::from_secs(5),
        use_connected: false,
        confidence_max: 3,
        max_peer_addresses: 8,
        throttle_clients_global_max: if config.relay_server {
            config.autonat_clients_per_second
        } else {
            0
        },
        throttle_clients_peer_max: config.autonat_per_peer,
        throttle_clients_period: Duration::from_secs(1),
        only_global_ips: false,
    }
}

/// Kademlia on [`KAD_PROTOCOL`]: small packets (provider messages only), no value records
/// kept from others, provider records expire after a day and are republished twice a day.
fn kad_config() -> kad::Config {
    let mut c = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    c.set_max_packet_size(64 * 1024)
        .set_query_timeout(Duration::from_secs(20))
        .set_record_ttl(Some(Duration::from_secs(60 * 60)))
        .set_provider_record_ttl(Some(Duration::from_secs(24 * 60 * 60)))
        .set_provider_publication_interval(Some(Duration::from_secs(12 * 60 * 60)))
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(10 * 60)));
    c
}

/// The bounds of a node's Kademlia store: no value records at all (Hearth puts none; anyone
/// else's are refused), at most `kad_max_keys` located records with at most
/// `kad_providers_per_key` relays each.
pub fn kad_store_config(config: &NetConfig) -> kad::store::MemoryStoreConfig {
    kad::store::MemoryStoreConfig {
        max_records: 0,
        max_value_bytes: 0,
        max_providers_per_key: config.kad_providers_per_key,
        max_provided_keys: config.kad_max_keys,
    }
}

/// The libp2p keypair of a node: its ed25519 device key.
pub fn keypair(identity: &Identity) -> Result<Keypair, NetError> {
    // `try_from_bytes` zeroizes the copy it is given.
    let mut secret = identity.device_key().to_bytes();
    let sk = ed25519::SecretKey::try_from_bytes(&mut secret).map_err(|_| NetError::BadKey)?;
    Ok(Keypair::from(ed25519::Keypair::from(sk)))
}

/// The libp2p peer id of a Hearth peer key, if the key is a valid ed25519 point (parsed
/// through the process's memo of parsed keys: the driver converts keys at every event).
pub fn peer_id(key: &PeerKey) -> Option<PeerId> {
    key.verifying_key().ok()?;
    PeerId::from_bytes(&key.peer_id_bytes()).ok()
}

/// The Hearth peer key of a libp2p peer id, if it is an ed25519 key (Hearth only uses those;
/// any other kind of peer is a stranger speaking another dialect).
pub fn peer_key(id: &PeerId) -> Option<PeerKey> {
    PeerKey::from_peer_id_bytes(&id.to_bytes())
}

fn transport_err(e: impl std::fmt::Display) -> NetError {
    NetError::Transport(e.to_string())
}

/// The swarm's settings: idle connections close after `config.idle_timeout`, and a stream's
/// protocol is negotiated without a round trip of its own (`V1Lazy`: the request follows the
/// protocol's name at once; every Hearth stream offers one protocol only).
fn swarm_config(c: libp2p::swarm::Config, config: &NetConfig) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(config.idle_timeout)
        .with_substream_upgrade_protocol_override(Version::V1Lazy)
}

/// A swarm on TCP (and QUIC with the `quic` feature) with Noise and Yamux, on tokio.
pub fn swarm<M: WireMessage>(
    keypair: Keypair,
    config: &NetConfig,
) -> Result<Swarm<Behaviour<M>>, NetError> {
    let tcp = tcp::Config::default().nodelay(true);
    let mut behaviour = Behaviour::new(&keypair, config)?;
    let builder = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp, noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        .with_dns()
        .map_err(transport_err)?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_behaviour(move |_, client| {
            behaviour.relay_client = Some(client).into();
            behaviour
        })
        .map_err(transport_err)?
        .with_swarm_config(|c| swarm_config(c, config))
        .build();
    Ok(swarm)
}

/// A swarm on libp2p's in-memory transport (addresses `/memory/N`), with Noise and Yamux:
/// for tests and in-process examples.
pub fn memory_swarm<M: WireMessage>(
    keypair: Keypair,
    config: &NetConfig,
) -> Result<Swarm<Behaviour<M>>, NetError> {
    let mut behaviour = Behaviour::new(&keypair, config)?;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .boxed(),
            )
        })
        .map_err(transport_err)?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_behaviour(move |_, client| {
            behaviour.relay_client = Some(client).into();
            behaviour
        })
        .map_err(transport_err)?
        .with_swarm_config(|c| swarm_config(c, config))
        .build();
    Ok(swarm)
}

/// The IP socket address a TCP or QUIC multiaddr names, and whether it is UDP (QUIC).
fn socket_of(addr: &Multiaddr) -> Option<(std::net::SocketAddr, bool)> {
    use libp2p::multiaddr::Protocol;
    let mut it = addr.iter();
    let ip: std::net::IpAddr = match it.next()? {
        Protocol::Ip4(a) => a.into(),
        Protocol::Ip6(a) => a.into(),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some(((ip, port).into(), false)),
        Protocol::Udp(port) => Some(((ip, port).into(), true)),
        _ => None,
    }
}

/// Starts listening on `addr`, refusing an address another process already holds.
///
/// libp2p's TCP transport sets `SO_REUSEPORT` on its listening sockets, so on Linux a second
/// node of the same user could bind a port the first one listens on, and the kernel would
/// then split incoming connections between them. Before a fixed port is handed to libp2p it
/// is therefore bound once here without port reuse (a plain socket, closed at once): that
/// fails while anyone listens there. Port 0 needs no check (the system picks a free port).
pub fn listen_exclusive<M: WireMessage>(
    swarm: &mut Swarm<Behaviour<M>>,
    addr: &Multiaddr,
) -> Result<libp2p::core::transport::ListenerId, NetError> {
    if let Some((sock, udp)) = socket_of(addr)
        && sock.port() != 0
    {
        let probe = if udp {
            std::net::UdpSocket::bind(sock).map(drop)
        } else {
            std::net::TcpListener::bind(sock).map(drop)
        };
        match probe {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(NetError::AddressInUse(addr.to_string()));
            }
            Err(e) => return Err(NetError::Listen(addr.to_string(), e.to_string())),
        }
    }
    swarm.listen_on(addr.clone()).map_err(|e| match e {
        libp2p::TransportError::Other(io)
            if io.to_string().contains("in use")
                || matches!(
                    std::error::Error::source(&io)
                        .and_then(|s| s.downcast_ref::<std::io::Error>())
                        .map(|i| i.kind()),
                    Some(std::io::ErrorKind::AddrInUse)
                ) =>
        {
            NetError::AddressInUse(addr.to_string())
        }
        other => NetError::Listen(addr.to_string(), other.to_string()),
    })
}

/// `addr` with its TCP or UDP port set to 0 (a fresh port chosen by the system).
pub fn with_fresh_port(addr: &Multiaddr) -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(0),
            Protocol::Udp(_) => Protocol::Udp(0),
            other => other,
        })
        .collect()
}

/// The stored addresses (a known peer's, or this node's last listen addresses) that parse as
/// multiaddresses.
pub fn multiaddrs(addrs: &hearth_core::ledger::PeerAddrs) -> Vec<Multiaddr> {
    addrs.addrs.iter().filter_map(|a| a.parse().ok()).collect()
}

/// Whether this build has the QUIC transport.
pub const HAS_QUIC: bool = cfg!(feature = "quic");

#[cfg(test)]
mod tests;

/// The protocol's messages travel one per frame, in their canonical CBOR encoding.
impl WireMessage for crate::protocol::Message {
    fn to_frame(&self) -> Vec<u8> {
        crate::protocol::encode(self)
    }
    fn from_frame(bytes: &[u8]) -> Result<Self, String> {
        crate::protocol::decode(bytes).map_err(|e| e.to_string())
    }
}

/// Only `Notify` travels on `/hearth/notify/1`.
impl notify::IsNotify for crate::protocol::Message {
    fn is_notify(&self) -> bool {
        matches!(self, crate::protocol::Message::Notify(_))
    }
}

/// The swarm of a Hearth node.
pub type HearthSwarm = Swarm<Behaviour<crate::protocol::Message>>;
