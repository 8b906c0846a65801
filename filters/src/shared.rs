//! Shared data across worker VMs: one keys record and one fetch lease per remote provider.
//!
//! The lease is a deadline stored under its own key and taken with compare-and-swap, so exactly
//! one worker fetches while the others wait for the record to change. A lease whose holder died
//! expires by itself. Keys are named after the provider and a fingerprint of where its keys
//! come from, so a changed configuration never reads another source's keys.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use tollgate::config::RemoteKeys;
use tollgate::keys::KeysRecord;

pub struct Lease {
    name: String,
    record_key: String,
    lease_key: String,
}

/// A CAS value no entry has yet: a write with it succeeds only when the key does not exist.
const CREATE_ONLY: u32 = u32::MAX;

fn fingerprint(text: &str) -> u64 {
    // FNV-1a: stable across builds and workers.
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Lease {
    pub fn new(provider: &str, remote: &RemoteKeys) -> Lease {
        let source = format!(
            "{}|{}|{}|{}",
            provider, remote.cluster, remote.url, remote.discovery
        );
        let base = format!("tollgate.keys.{provider}.{:016x}", fingerprint(&source));
        Lease {
            name: provider.to_string(),
            record_key: format!("{base}.record"),
            lease_key: format!("{base}.lease"),
        }
    }

    pub fn provider_name(&self) -> &str {
        &self.name
    }

    /// Creates the lease entry if no worker has yet, without overwriting one that exists.
    pub fn ensure_exists(&self) {
        let _ = hostcalls::set_shared_data(&self.lease_key, Some(b"0"), Some(CREATE_ONLY));
    }

    /// Takes the lease until `now + hold_ms` if it is free or expired.
    pub fn acquire(&self, now_ms: u64, hold_ms: u64) -> bool {
        self.ensure_exists();
        let Ok((value, Some(cas))) = hostcalls::get_shared_data(&self.lease_key) else {
            return false;
        };
        let held_until = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if held_until > now_ms {
            return false;
        }
        let until = (now_ms + hold_ms).to_string();
        hostcalls::set_shared_data(&self.lease_key, Some(until.as_bytes()), Some(cas)).is_ok()
    }

    pub fn release(&self) {
        let _ = hostcalls::set_shared_data(&self.lease_key, Some(b"0"), None);
    }

    pub fn read_record(&self) -> Option<KeysRecord> {
        match hostcalls::get_shared_data(&self.record_key) {
            Ok((Some(bytes), _)) => KeysRecord::decode(&bytes),
            Ok((None, _)) => Some(KeysRecord::default()),
            Err(Status::NotFound) => Some(KeysRecord::default()),
            Err(_) => None,
        }
    }

    pub fn write_record(&self, record: &KeysRecord) {
        let _ = hostcalls::set_shared_data(&self.record_key, Some(&record.encode()), None);
    }
}
