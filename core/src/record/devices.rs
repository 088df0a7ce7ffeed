//! The patient's devices: certificates signed by the record root, linking and removal.

use super::{OpenRecord, RecordError, Result, json_string};
use crate::crypto::{self, Domain};
use crate::ids::{PeerKey, RecordId, SectionId};
use crate::keywrap::KeyWrap;
use crate::ledger::{Key, Kind};
use crate::store::Store;
use crate::time::Timestamp;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A device the record root has certified as the patient's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCert {
    /// The device key.
    pub peer: PeerKey,
    /// The device's name.
    pub name: String,
    /// Its X25519 agreement key, hex.
    pub agreement_public: String,
    /// When it was added.
    pub added: Timestamp,
    /// Root signature over (peer, agreement key), hex.
    pub root_signature: String,
}

impl DeviceCert {
    /// The certificate of device `peer` (named `name`, with X25519 key `agreement`), signed
    /// by the record root `root`.
    pub(super) fn issue(
        root: &ed25519_dalek::SigningKey,
        peer: PeerKey,
        name: String,
        agreement: [u8; 32],
        now: Timestamp,
    ) -> DeviceCert {
        DeviceCert {
            peer,
            name,
            agreement_public: data_encoding::HEXLOWER.encode(&agreement),
            added: now,
            root_signature: data_encoding::HEXLOWER.encode(&crypto::sign(
                root,
                Domain::DeviceCert,
                &[&peer.0, &agreement],
            )),
        }
    }

    /// Whether `record`'s root key signed this certificate.
    pub fn verify(&self, record: &RecordId) -> bool {
        let (Ok(root), Ok(agreement), Ok(sig)) = (
            record.verifying_key(),
            data_encoding::HEXLOWER.decode(self.agreement_public.as_bytes()),
            data_encoding::HEXLOWER.decode(self.root_signature.as_bytes()),
        ) else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
            return false;
        };
        crypto::verify(&root, Domain::DeviceCert, &[&self.peer.0, &agreement], &sig).is_ok()
    }
}

impl<'v, S: Store> OpenRecord<'v, S> {
    /// The patient's devices, as certified by the record root (unverifiable and removed ones
    /// omitted).
    pub fn device_certs(&self) -> Vec<DeviceCert> {
        let removed = self.removed_devices();
        self.all_device_certs()
            .into_iter()
            .filter(|c| !removed.contains_key(&c.peer))
            .collect()
    }

    /// The keys of the patient's devices now ([`OpenRecord::device_certs`] without copying
    /// the certificates), in the order of their certificates.
    pub fn device_peers(&self) -> Vec<PeerKey> {
        let facts = self.auth_facts();
        facts
            .device_certs
            .iter()
            .filter(|c| !facts.removed.contains_key(&c.peer))
            .map(|c| c.peer)
            .collect()
    }

    /// Whether `peer` is one of the patient's devices now: certified by the record root and not
    /// removed ([`OpenRecord::device_certs`] without copying them).
    pub fn is_device(&self, peer: &PeerKey) -> bool {
        let facts = self.auth_facts();
        !facts.removed.contains_key(peer) && facts.device_certs.iter().any(|c| c.peer == *peer)
    }

    /// The keys of every device the record root ever certified, removed ones included (what
    /// they wrote before removal stays theirs).
    pub fn all_device_peers(&self) -> std::collections::BTreeSet<PeerKey> {
        self.auth_facts()
            .device_certs
            .iter()
            .map(|d| d.peer)
            .collect()
    }

    /// Every device the record root ever certified, removed ones included (see
    /// [`OpenRecord::removed_devices`]); unverifiable certificates omitted.
    pub fn all_device_certs(&self) -> Vec<DeviceCert> {
        self.auth_facts().device_certs.clone()
    }

    /// [`OpenRecord::all_device_certs`], read from the auth document.
    pub(super) fn read_device_certs(&self) -> Vec<DeviceCert> {
        self.auth_items(Kind::Device.prefix())
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str::<DeviceCert>(&v).ok())
            .filter(|c| c.verify(&self.id))
            .collect()
    }

    /// Devices removed from the record, with when (a removal is permanent: that device key
    /// never writes to the record again).
    pub fn removed_devices(&self) -> BTreeMap<PeerKey, Timestamp> {
        self.auth_facts().removed.clone()
    }

    /// [`OpenRecord::removed_devices`], read from the auth document.
    pub(super) fn read_removed_devices(&self) -> BTreeMap<PeerKey, Timestamp> {
        self.auth_items(Kind::DeviceRemoved.prefix())
            .into_iter()
            .filter_map(|(k, v)| {
                let peer = Kind::DeviceRemoved.id_in(&k)?.parse().ok()?;
                let at = serde_json::from_str::<serde_json::Value>(&v)
                    .ok()
                    .and_then(|v| serde_json::from_value(v.get("at")?.clone()).ok())?;
                Some((peer, at))
            })
            .collect()
    }

    /// Whether this node holds the record's root key (and is registered as its owner): only
    /// such a device wraps keys, creates sections, certifies devices and rotates keys.
    pub fn holds_root(&self) -> bool {
        self.owner && self.identity.holds_root_of(&self.id)
    }

    /// For a patient's device: fine if it holds the root, or if the root still certifies it.
    pub(super) fn check_linked(&self) -> Result<()> {
        let me = self.identity.peer();
        if self.holds_root() || self.is_device(&me) {
            Ok(())
        } else {
            Err(RecordError::NotPermitted(
                "this device is not (or no longer) linked to the record",
            ))
        }
    }

    pub(super) fn root_for(&self, what: &'static str) -> Result<&'v ed25519_dalek::SigningKey> {
        self.identity
            .root_key()
            .filter(|_| self.holds_root())
            .ok_or(RecordError::NotPermitted(what))
    }

    /// The agreement keys of the patient's other certified devices.
    pub(super) fn other_devices_agreement(&self) -> Vec<[u8; 32]> {
        let me = self.identity.peer();
        self.device_certs()
            .into_iter()
            .filter(|c| c.peer != me)
            .filter_map(|c| {
                let b = data_encoding::HEXLOWER
                    .decode(c.agreement_public.as_bytes())
                    .ok()?;
                <[u8; 32]>::try_from(b.as_slice()).ok()
            })
            .collect()
    }

    /// Certifies another device of the patient's (root holder only): checks the device's
    /// signature over its agreement key, writes a root-signed [`DeviceCert`] into the auth
    /// document, and returns it with the record's keys wrapped to the device.
    pub fn certify_device(
        &mut self,
        peer: PeerKey,
        name: &str,
        agreement: [u8; 32],
        agreement_signature: &[u8; 64],
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<(DeviceCert, Vec<KeyWrap>)> {
        let root = self.root_for(
            "only the device holding the record root key (your first device, or one restored from the recovery phrase) can link devices",
        )?;
        let device_key = peer
            .verifying_key()
            .map_err(|_| RecordError::Invalid("the device key is not a valid ed25519 key"))?;
        crypto::verify(
            &device_key,
            Domain::AgreementKey,
            &[&agreement],
            agreement_signature,
        )
        .map_err(|_| RecordError::Invalid("the device's agreement key is not signed by it"))?;
        crypto::check_agreement_public(&agreement).map_err(|_| {
            RecordError::Invalid("the device's agreement key is of small order (refused)")
        })?;
        if self.removed_devices().contains_key(&peer) {
            return Err(RecordError::NotPermitted(
                "that device was removed from this record; link it again with fresh keys",
            ));
        }
        if self.is_device(&peer) {
            return Err(RecordError::NotPermitted(
                "that device is already linked to this record",
            ));
        }
        let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        let cert = DeviceCert::issue(root, peer, name, agreement, now);
        let sections: Vec<SectionId> = self.keys.keys().copied().collect();
        let wraps = self.wrap_missing_keys(agreement, &sections, &[], rng)?;
        self.put_auth_items(
            vec![(Key::Device(&peer).text(), json_string(&cert)?)],
            now,
            rng,
        )?;
        Ok((cert, wraps))
    }

    /// Removes one of the patient's devices (root holder only): records the removal in the
    /// auth document, so every node stops serving it and refuses its writes from then on, and
    /// moves every section to a new key it does not receive. Returns the sections rotated.
    pub fn remove_device(
        &mut self,
        peer: PeerKey,
        now: Timestamp,
        rng: &mut impl CryptoRng,
    ) -> Result<usize> {
        self.root_for(
            "only the device holding the record root key (your first device, or one restored from the recovery phrase) can remove devices",
        )?;
        if peer == self.identity.peer() {
            return Err(RecordError::NotPermitted(
                "this device cannot remove itself; remove it from another device holding the root key",
            ));
        }
        if !self.is_device(&peer) {
            return Err(RecordError::NotPermitted(
                "no such device is linked to this record",
            ));
        }
        self.put_auth_items(
            vec![(
                Key::DeviceRemoved(&peer).text(),
                json_string(&serde_json::json!({ "at": now }))?,
            )],
            now,
            rng,
        )?;
        let all: Vec<SectionId> = self.keys.keys().copied().collect();
        self.rotate_keys(&all, now, rng)
    }
}
