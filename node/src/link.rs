//! Linking a patient's devices: `hearth device link` on the device that holds the record root
//! key, `hearth init --join CODE` on the new one.
//!
//! The root holder opens a **pairing slot** and prints a one-time code (and a QR code of it):
//! `HEARTH1L…`, holding the root device's peer id and addresses, a slot id and a 128-bit
//! secret. The new device dials that peer id (Noise proves it is the right device) and the two
//! run SPAKE2 with the secret as the password and both peer ids as identities, so an
//! eavesdropper learns nothing and a man in the middle cannot relay. Then, on `/hearth/sync/1`:
//!
//! ```text
//! joiner                                         root holder
//!   Link::Start { slot, pake A }            →
//!                                           ←    Link::Pake { pake B }
//!   Link::Join { seal(K, name, agreement key,
//!                     its signature) }      →    checks, certifies the device in the auth
//!                                                document, wraps every key to it
//!                                           ←    Link::Welcome { seal(K, record, certificate,
//!                                                                 key wraps) }
//! ```
//!
//! A slot serves one device: it closes after a success, after the first failed attempt (a
//! wrong code gets one online guess, never an offline one), or when it expires (10 minutes by
//! default). The new device then holds the record's keys and syncs the whole record with the
//! patient's other devices. It does not hold the record root key: granting access, creating
//! sections and rotating keys stay with the root holder (see `docs/DEVICES.md`).

use crate::fail::{Failure, code};
use crate::live::Shared;
use hearth_core::crypto::{self, SymmetricKey};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::keys::Identity;
use hearth_core::record::{DeviceCert, KeyWrap};
use hearth_core::store::Store;
use hearth_core::time::Timestamp;
use hearth_sync::protocol::{LinkMessage, Message};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use spake2::{Ed25519Group, Identity as PakeId, Password, Spake2};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The text form's prefix.
pub const CODE_PREFIX: &str = "HEARTH1L";
/// How long a code stays valid unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The most addresses a code carries.
const MAX_CODE_ADDRS: usize = 8;
/// The longest code accepted.
const MAX_CODE_LEN: usize = 4096;

/// What a link code holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    v: u8,
    /// The root holder's device key.
    peer: PeerKey,
    /// Where to reach it.
    addrs: Vec<String>,
    /// Which slot.
    slot: ByteBuf,
    /// The PAKE password.
    secret: ByteBuf,
    /// Until when.
    expires: Timestamp,
}

/// A parsed link code (the secret zeroizes on drop).
pub struct LinkCode {
    /// The root holder's device key.
    pub peer: PeerKey,
    /// Where to reach it.
    pub addrs: Vec<String>,
    /// Until when the code is valid.
    pub expires: Timestamp,
    slot: Vec<u8>,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCode")
            .field("peer", &self.peer)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl LinkCode {
    /// Reads a code's text form, checking its shape (not yet whether it is still valid).
    pub fn parse(text: &str) -> Result<LinkCode, Failure> {
        let bad = |why: &str| Failure::new(code::INVALID, format!("that link code {why}"));
        let t: String = text
            .split_whitespace()
            .collect::<String>()
            .to_ascii_uppercase();
        if t.len() > MAX_CODE_LEN {
            return Err(bad("is too long"));
        }
        let body = t
            .strip_prefix(CODE_PREFIX)
            .ok_or_else(|| bad("does not start with HEARTH1L (is it a link code?)"))?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| bad("is damaged (not base32); copy it again"))?;
        let b: CodeBody =
            serde_ipld_dagcbor::from_slice(&bytes).map_err(|_| bad("is damaged; copy it again"))?;
        if b.v != 1 {
            return Err(bad("comes from a newer version of hearth"));
        }
        if b.slot.len() != 8 || b.secret.len() != 16 {
            return Err(bad("is damaged; copy it again"));
        }
        if b.addrs.is_empty() || b.addrs.len() > MAX_CODE_ADDRS {
            return Err(bad("carries no usable address"));
        }
        let secret = Zeroizing::new(b.secret.to_vec());
        Ok(LinkCode {
            peer: b.peer,
            addrs: b.addrs.clone(),
            expires: b.expires,
            slot: b.slot.to_vec(),
            secret,
        })
    }
}

/// How a pairing slot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    /// A device was linked.
    Linked {
        /// Its device key.
        peer: PeerKey,
        /// The name it gave.
        name: String,
    },
    /// The attempt failed; the slot is closed.
    Failed(String),
    /// Nobody came before the code expired.
    Expired,
}

enum SlotState {
    Open,
    Pake {
        peer: PeerKey,
        key: Zeroizing<Vec<u8>>,
    },
    Done(LinkOutcome),
}

struct Slot {
    id: [u8; 8],
    secret: Zeroizing<[u8; 16]>,
    expires: Instant,
    state: SlotState,
}

/// The root holder's pairing slot (one at a time: a new code replaces an open one), shared
/// between the command that opened it and the network driver that answers the new device.
#[derive(Clone, Default)]
pub struct Pairing(Arc<Mutex<Option<Slot>>>);

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pairing(..)")
    }
}

fn random<const N: usize>() -> Result<[u8; N], Failure> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|_| Failure::new(code::IO, "the system random number generator failed"))?;
    Ok(b)
}

impl Pairing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a slot for `ttl` and returns its code, for the root device `peer` reachable at
    /// `addrs`.
    pub fn open(
        &self,
        peer: PeerKey,
        addrs: &[String],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<String, Failure> {
        if addrs.is_empty() {
            return Err(Failure::new(
                code::IO,
                "this node has no listen address to put in the code",
            ));
        }
        let id = random::<8>()?;
        let secret = Zeroizing::new(random::<16>()?);
        let body = CodeBody {
            v: 1,
            peer,
            addrs: addrs.iter().take(MAX_CODE_ADDRS).cloned().collect(),
            slot: ByteBuf::from(id.to_vec()),
            secret: ByteBuf::from(secret.to_vec()),
            expires: now.saturating_add_millis(ttl.as_millis().try_into().unwrap_or(i64::MAX)),
        };
        let bytes = Zeroizing::new(
            serde_ipld_dagcbor::to_vec(&body)
                .map_err(|_| Failure::new(code::IO, "internal: cannot encode the code"))?,
        );
        let text = format!(
            "{CODE_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&bytes)
        );
        *self.lock() = Some(Slot {
            id,
            secret,
            expires: Instant::now() + ttl,
            state: SlotState::Open,
        });
        Ok(text)
    }

    /// How the slot ended, if it has (an open slot past its time counts as expired).
    pub fn outcome(&self) -> Option<LinkOutcome> {
        let mut g = self.lock();
        let slot = g.as_mut()?;
        if let SlotState::Done(o) = &slot.state {
            return Some(o.clone());
        }
        if Instant::now() >= slot.expires {
            slot.state = SlotState::Done(LinkOutcome::Expired);
            return Some(LinkOutcome::Expired);
        }
        None
    }

    /// Closes any open slot.
    pub fn close(&self) {
        let mut g = self.lock();
        if let Some(slot) = g.as_mut()
            && !matches!(slot.state, SlotState::Done(_))
        {
            slot.state = SlotState::Done(LinkOutcome::Failed("cancelled".into()));
        }
    }
}

/// What the joining device sends, sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    agreement: ByteBuf,
    agreement_signature: ByteBuf,
}

/// What the root holder answers, sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WelcomeBody {
    record: RecordId,
    cert: DeviceCert,
    wraps: Vec<KeyWrap>,
}

fn subkey(k: &[u8], label: &str) -> SymmetricKey {
    SymmetricKey::from_bytes(crypto::sha256(&[b"hearth/link/v1/", label.as_bytes(), k]))
}

fn aad(label: &str, slot: &[u8], joiner: &PeerKey, root: &PeerKey) -> Vec<u8> {
    let mut a = format!("hearth/link/v1/{label}").into_bytes();
    a.extend_from_slice(slot);
    a.extend_from_slice(&joiner.0);
    a.extend_from_slice(&root.0);
    a
}

fn refused(reason: &str) -> LinkMessage {
    LinkMessage::Refused {
        reason: reason.to_string(),
    }
}

const NO_SLOT: &str =
    "no such link code here, or it expired or was already used; run `hearth device link` again";
const MISMATCH: &str = "the link code did not match; run `hearth device link` again for a new code";

/// Root holder: answers one link message from `peer` (authenticated by the transport).
pub fn respond<S: Store>(
    sh: &Shared<S>,
    pairing: &Pairing,
    peer: PeerKey,
    msg: LinkMessage,
    now: Timestamp,
) -> LinkMessage {
    let mut g = pairing.lock();
    let Some(slot) = g.as_mut() else {
        return refused(NO_SLOT);
    };
    if matches!(slot.state, SlotState::Done(_)) {
        return refused(NO_SLOT);
    }
    if Instant::now() >= slot.expires {
        slot.state = SlotState::Done(LinkOutcome::Expired);
        return refused(NO_SLOT);
    }
    let me = sh.identity.peer();
    let fail = |slot: &mut Slot, why: &str| {
        tracing::warn!(%peer, "device link attempt failed: {why}");
        slot.state = SlotState::Done(LinkOutcome::Failed(why.to_string()));
        refused(why)
    };
    // Whatever happens below sets the next state; a step that fails leaves the slot closed.
    let state = std::mem::replace(
        &mut slot.state,
        SlotState::Done(LinkOutcome::Failed("interrupted".into())),
    );
    match (msg, state) {
        (LinkMessage::Start { slot: id, pake }, SlotState::Open) => {
            if id.as_slice() != slot.id {
                // Another slot's code (or a guess): not an attempt at this one.
                slot.state = SlotState::Open;
                return refused(NO_SLOT);
            }
            let (state, msg_b) = Spake2::<Ed25519Group>::start_b(
                &Password::new(slot.secret.as_slice()),
                &PakeId::new(&peer.0),
                &PakeId::new(&me.0),
            );
            match state.finish(&pake) {
                Ok(k) => {
                    slot.state = SlotState::Pake {
                        peer,
                        key: Zeroizing::new(k),
                    };
                    LinkMessage::Pake {
                        pake: ByteBuf::from(msg_b),
                    }
                }
                Err(_) => fail(slot, "the new device's key exchange message is malformed"),
            }
        }
        (LinkMessage::Join { sealed }, SlotState::Pake { peer: p, key }) if p == peer => {
            let join_key = subkey(&key, "join");
            let welcome_key = subkey(&key, "welcome");
            let Ok(plain) = crypto::open(&join_key, &aad("join", &slot.id, &peer, &me), &sealed)
            else {
                return fail(slot, MISMATCH);
            };
            let plain = Zeroizing::new(plain);
            let Ok(body) = serde_ipld_dagcbor::from_slice::<JoinBody>(&plain) else {
                return fail(slot, "the new device sent a malformed request");
            };
            let (Ok(agreement), Ok(sig)) = (
                <[u8; 32]>::try_from(body.agreement.as_slice()),
                <[u8; 64]>::try_from(body.agreement_signature.as_slice()),
            ) else {
                return fail(slot, "the new device sent a malformed request");
            };
            let Some(record) = sh.identity.record_id() else {
                return fail(slot, "this node holds no patient record");
            };
            let mut rng = crate::commands::os_rng();
            let certified = sh
                .vault
                .open_record(&sh.identity, &record)
                .map_err(|e| e.to_string())
                .and_then(|mut rec| {
                    rec.certify_device(peer, &body.name, agreement, &sig, now, &mut rng)
                        .map_err(|e| e.to_string())
                });
            let (cert, wraps) = match certified {
                Ok(x) => x,
                Err(e) => return fail(slot, &format!("cannot link that device: {e}")),
            };
            let welcome = WelcomeBody {
                record,
                cert: cert.clone(),
                wraps,
            };
            let Ok(bytes) = serde_ipld_dagcbor::to_vec(&welcome) else {
                return fail(slot, "internal: cannot encode the answer");
            };
            let bytes = Zeroizing::new(bytes);
            let sealed = crypto::seal(
                &welcome_key,
                &aad("welcome", &slot.id, &peer, &me),
                &bytes,
                &mut rng,
            );
            tracing::info!(device = %peer, "linked a new device to the record");
            slot.state = SlotState::Done(LinkOutcome::Linked {
                peer,
                name: cert.name,
            });
            LinkMessage::Welcome {
                sealed: ByteBuf::from(sealed),
            }
        }
        (LinkMessage::Start { .. }, _) | (LinkMessage::Join { .. }, _) => {
            // A second device, or steps out of order: the slot serves one attempt.
            fail(
                slot,
                "a second or out-of-order attempt to use the link code",
            )
        }
        (_, state) => {
            slot.state = state;
            refused("not a request")
        }
    }
}

/// What a successful join gives the new device.
pub struct Welcome {
    /// The record it now belongs to.
    pub record: RecordId,
    /// Its certificate.
    pub cert: DeviceCert,
    /// The record's keys, wrapped to it.
    pub wraps: Vec<KeyWrap>,
}

/// The joiner's side, one step at a time (the caller moves the messages).
pub struct Joiner<'a> {
    code: &'a LinkCode,
    identity: &'a Identity,
    key: Option<Zeroizing<Vec<u8>>>,
    pake: Option<Spake2<Ed25519Group>>,
}

impl<'a> Joiner<'a> {
    /// Starts joining with `code` as `identity` (fresh keys, not yet saved anywhere).
    pub fn new(code: &'a LinkCode, identity: &'a Identity) -> Self {
        Joiner {
            code,
            identity,
            key: None,
            pake: None,
        }
    }

    /// The first message.
    pub fn start(&mut self) -> Message {
        let (state, msg_a) = Spake2::<Ed25519Group>::start_a(
            &Password::new(self.code.secret.as_slice()),
            &PakeId::new(&self.identity.peer().0),
            &PakeId::new(&self.code.peer.0),
        );
        self.pake = Some(state);
        Message::Link(LinkMessage::Start {
            slot: ByteBuf::from(self.code.slot.clone()),
            pake: ByteBuf::from(msg_a),
        })
    }

    /// Handles the root holder's PAKE message: the sealed join request to send next.
    pub fn on_pake(&mut self, msg: Message) -> Result<Message, Failure> {
        let pake = match msg {
            Message::Link(LinkMessage::Pake { pake }) => pake,
            other => return Err(unexpected(other)),
        };
        let state = self
            .pake
            .take()
            .ok_or_else(|| Failure::new(code::REFUSED, "link steps out of order"))?;
        let k = Zeroizing::new(state.finish(&pake).map_err(|_| {
            Failure::new(
                code::REFUSED,
                "the other device's key exchange message is malformed",
            )
        })?);
        let body = JoinBody {
            name: self.identity.name.clone(),
            agreement: ByteBuf::from(self.identity.agreement_public().to_vec()),
            agreement_signature: ByteBuf::from(self.identity.agreement_certificate().to_vec()),
        };
        let bytes = Zeroizing::new(
            serde_ipld_dagcbor::to_vec(&body)
                .map_err(|_| Failure::new(code::IO, "internal: cannot encode the request"))?,
        );
        let mut rng = crate::commands::os_rng();
        let sealed = crypto::seal(
            &subkey(&k, "join"),
            &aad(
                "join",
                &self.code.slot,
                &self.identity.peer(),
                &self.code.peer,
            ),
            &bytes,
            &mut rng,
        );
        self.key = Some(k);
        Ok(Message::Link(LinkMessage::Join {
            sealed: ByteBuf::from(sealed),
        }))
    }

    /// Handles the welcome: checks everything in it against the record root and this
    /// device's keys.
    pub fn on_welcome(&mut self, msg: Message) -> Result<Welcome, Failure> {
        let sealed = match msg {
            Message::Link(LinkMessage::Welcome { sealed }) => sealed,
            other => return Err(unexpected(other)),
        };
        let k = self
            .key
            .take()
            .ok_or_else(|| Failure::new(code::REFUSED, "link steps out of order"))?;
        let me = self.identity.peer();
        let plain = Zeroizing::new(
            crypto::open(
                &subkey(&k, "welcome"),
                &aad("welcome", &self.code.slot, &me, &self.code.peer),
                &sealed,
            )
            .map_err(|_| {
                Failure::new(
                    code::INTEGRITY,
                    "the other device's answer does not open with the agreed key",
                )
            })?,
        );
        let w: WelcomeBody = serde_ipld_dagcbor::from_slice(&plain)
            .map_err(|_| Failure::new(code::INTEGRITY, "the other device's answer is malformed"))?;
        let bad = |why: &str| Failure::new(code::INTEGRITY, format!("refusing the link: {why}"));
        let mine = self.identity.agreement_public();
        if w.cert.peer != me
            || w.cert.agreement_public != data_encoding::HEXLOWER.encode(&mine)
            || !w.cert.verify(&w.record)
        {
            return Err(bad(
                "the device certificate is not for this device or not signed by the record",
            ));
        }
        if w.wraps.len() > hearth_sync::protocol::MAX_KEYS
            || w.wraps
                .iter()
                .any(|x| x.record != w.record || x.recipient.into_array() != mine || !x.verify())
        {
            return Err(bad(
                "a key is not for this device or not signed by the record",
            ));
        }
        if !w.wraps.iter().any(|x| x.section == SectionId::AUTH) {
            return Err(bad("the record's keys are missing"));
        }
        Ok(Welcome {
            record: w.record,
            cert: w.cert,
            wraps: w.wraps,
        })
    }
}

fn unexpected(m: Message) -> Failure {
    match m {
        Message::Link(LinkMessage::Refused { reason }) => Failure::new(
            code::REFUSED,
            format!(
                "the other device refused: {}",
                reason.chars().take(300).collect::<String>()
            ),
        ),
        _ => Failure::new(code::REFUSED, "the other device answered out of turn"),
    }
}

#[cfg(test)]
mod tests;
