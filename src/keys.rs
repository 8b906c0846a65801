//! The JWKS cache of one remote provider, as a record every worker shares.
//!
//! Envoy runs one wasm VM per worker thread; they share only the host's key-value store. So the
//! cache state is one serializable [`KeysRecord`] per provider, and the fetch itself is guarded by
//! a lease (see the filter) so that one fetch serves every worker. Everything that decides *when*
//! to fetch, *whether* an answer replaces the keys, and *how long* keys stay usable lives here as
//! pure functions of the record, the answer and `now_ms`, and is tested with a fake clock.
//!
//! Rules (SECURITY.md, "JWKS and discovery"): keys are replaced only by a 200 answer, within the
//! size cap, that parses and holds at least one usable key; the last good keys keep serving for a
//! bounded stale period while refreshes fail, with jittered exponential backoff; refresh happens
//! at the end of the TTL, well before the keys stop being usable; an unknown `kid` causes at most
//! one refetch per cooldown.

use crate::config::{HttpUrl, RemoteKeys};
use crate::jwk::{JwkSet, JwksError, JwksLimits, KeyOrigin};
use serde_json::{Map, Value};

/// The shared state of one provider's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct KeysRecord {
    /// Increases with every write, so workers notice a change cheaply.
    pub version: u64,
    /// The last good JWKS document, as fetched.
    pub jwks: Option<String>,
    pub fetched_at_ms: u64,
    /// When the next refresh is due.
    pub refresh_at_ms: u64,
    /// After this the keys are not served, even stale.
    pub usable_until_ms: u64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No fetch before this (backoff after a failure).
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    /// When an unknown `kid` last caused a refetch (0: never).
    pub kid_refetch_ms: u64,
    /// The JWKS URL found by discovery.
    pub jwks_uri: Option<String>,
    /// The introspection endpoint found by discovery.
    #[cfg_attr(test, serde(default))]
    pub introspection_uri: Option<String>,
}

/// Whether a provider's keys can verify tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// Never fetched successfully, and no fetch has failed yet: worth waiting for.
    Pending,
    /// No usable keys, and the last fetch failed.
    Unavailable,
}

/// Why a fetch is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    Initial,
    Refresh,
    Retry,
    UnknownKid,
}

/// What came back from a dispatched call; `status` is `None` when the call failed (timeout,
/// connection refused, reset).
#[derive(Debug, Clone, Copy)]
pub struct FetchAnswer<'a> {
    pub status: Option<u32>,
    pub cache_control: Option<&'a str>,
    pub body: &'a [u8],
    /// The body was over the host's limit and was not read (`body` is empty).
    pub oversized: bool,
}

/// Longest backoff between failed fetches.
const MAX_BACKOFF_MS: u64 = 60_000;
/// Largest discovery document accepted.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// An optional string member: `Some(None)` when absent or `null`, `None` when not a string.
fn optional_text(record: &Map<String, Value>, name: &str) -> Option<Option<String>> {
    match record.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

impl KeysRecord {
    /// The record as [`KeysRecord::encode`] wrote it; `None` for anything else (every worker
    /// then treats the provider as never fetched). Read from the strict parse by hand, as serde's
    /// derived reader read it (the tests compare the two): ~7 KB less of the module.
    pub fn decode(bytes: &[u8]) -> Option<KeysRecord> {
        let record = crate::json::parse_object(bytes, 1).ok()?;
        let number = |name: &str| record.get(name)?.as_u64();
        let text = |name: &str| optional_text(&record, name);
        Some(KeysRecord {
            version: number("version")?,
            jwks: text("jwks")?,
            fetched_at_ms: number("fetched_at_ms")?,
            refresh_at_ms: number("refresh_at_ms")?,
            usable_until_ms: number("usable_until_ms")?,
            failures: u32::try_from(number("failures")?).ok()?,
            next_attempt_ms: number("next_attempt_ms")?,
            last_error: text("last_error")?,
            kid_refetch_ms: number("kid_refetch_ms")?,
            jwks_uri: text("jwks_uri")?,
            introspection_uri: text("introspection_uri")?,
        })
    }

    /// The record as one JSON object, its members in the struct's order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + self.jwks.as_ref().map_or(0, String::len));
        let mut o = crate::json::Object::new(&mut out);
        o.u64("version", self.version);
        o.opt_str("jwks", self.jwks.as_deref());
        o.u64("fetched_at_ms", self.fetched_at_ms);
        o.u64("refresh_at_ms", self.refresh_at_ms);
        o.u64("usable_until_ms", self.usable_until_ms);
        o.u64("failures", u64::from(self.failures));
        o.u64("next_attempt_ms", self.next_attempt_ms);
        o.opt_str("last_error", self.last_error.as_deref());
        o.u64("kid_refetch_ms", self.kid_refetch_ms);
        o.opt_str("jwks_uri", self.jwks_uri.as_deref());
        o.opt_str("introspection_uri", self.introspection_uri.as_deref());
        o.end();
        out.into_bytes()
    }

    pub fn has_keys(&self, now_ms: u64) -> bool {
        self.jwks.is_some() && now_ms < self.usable_until_ms
    }

    pub fn availability(&self, now_ms: u64) -> Availability {
        if self.has_keys(now_ms) {
            Availability::Ready
        } else if self.failures == 0 {
            Availability::Pending
        } else {
            Availability::Unavailable
        }
    }

    /// What a request should do about these keys: use them, wait for a fetch, or give up.
    /// `fetching`: a fetch is in flight; `wait_ms`: how long a request may wait; `last_chance`:
    /// the request has waited all it may.
    pub fn availability_for_request(
        &self,
        now_ms: u64,
        fetching: bool,
        wait_ms: u64,
        last_chance: bool,
    ) -> Availability {
        match self.availability(now_ms) {
            Availability::Ready => Availability::Ready,
            _ if last_chance => Availability::Unavailable,
            Availability::Pending => Availability::Pending,
            // The last fetch failed: wait only if a fetch runs or a retry comes within the wait.
            Availability::Unavailable if fetching || self.next_attempt_ms <= now_ms + wait_ms => {
                Availability::Pending
            }
            Availability::Unavailable => Availability::Unavailable,
        }
    }

    /// Whether a scheduled fetch is due (not counting unknown-`kid` refetches).
    pub fn fetch_due(&self, now_ms: u64) -> Option<FetchReason> {
        if now_ms < self.next_attempt_ms {
            return None;
        }
        if self.jwks.is_none() {
            return Some(if self.failures == 0 {
                FetchReason::Initial
            } else {
                FetchReason::Retry
            });
        }
        if now_ms >= self.refresh_at_ms {
            return Some(if self.failures == 0 {
                FetchReason::Refresh
            } else {
                FetchReason::Retry
            });
        }
        None
    }

    /// Whether a token with an unknown `kid` may cause a refetch now.
    pub fn may_refetch_for_kid(&self, now_ms: u64, cfg: &RemoteKeys) -> bool {
        let cooled = self.kid_refetch_ms == 0
            || now_ms
                >= self
                    .kid_refetch_ms
                    .saturating_add(cfg.unknown_kid_cooldown * 1000);
        now_ms >= self.next_attempt_ms && cooled
    }

    /// Whether the next fetch must first read the discovery document.
    pub fn needs_discovery(&self, cfg: &RemoteKeys) -> bool {
        cfg.discovery && (self.jwks_uri.is_none() || self.failures > 0)
    }

    /// The JWKS URL to fetch: configured, or found by discovery.
    pub fn jwks_url(&self, cfg: &RemoteKeys) -> Option<HttpUrl> {
        if cfg.discovery {
            self.jwks_uri
                .as_deref()
                .and_then(|u| HttpUrl::parse(u).ok())
        } else {
            Some(cfg.url.clone())
        }
    }

    /// Records that a fetch is starting (stamps the unknown-`kid` cooldown).
    pub fn start_fetch(&mut self, reason: FetchReason, now_ms: u64) {
        if reason == FetchReason::UnknownKid {
            self.kid_refetch_ms = now_ms;
        }
    }

    /// Takes a discovery answer: on success remembers `jwks_uri` and returns it.
    pub fn apply_discovery(
        &mut self,
        answer: FetchAnswer,
        issuer: &str,
        cfg: &RemoteKeys,
        now_ms: u64,
        jitter: u64,
    ) -> Result<HttpUrl, String> {
        match read_discovery(answer, issuer) {
            Ok((jwks, introspection)) => {
                self.jwks_uri = Some(jwks.to_string());
                self.introspection_uri = introspection.map(|u| u.to_string());
                Ok(jwks)
            }
            Err(e) => {
                self.fail(e.clone(), cfg, now_ms, jitter);
                Err(e)
            }
        }
    }

    /// Takes a JWKS answer. Keys are replaced only by a good one; otherwise the failure is
    /// counted and the next attempt backed off, and the last good keys stay.
    pub fn apply_jwks(
        &mut self,
        answer: FetchAnswer,
        cfg: &RemoteKeys,
        now_ms: u64,
        jitter: u64,
    ) -> Result<JwkSet, String> {
        let parsed = match answer.status {
            None => Err("no answer (timeout or connection failure)".to_string()),
            Some(200) if answer.oversized => {
                Err(too_large("JWKS", JwksLimits::default().max_bytes))
            }
            Some(200) => JwkSet::parse(answer.body, KeyOrigin::Remote, &JwksLimits::default())
                .map_err(|e| match e {
                    JwksError::TooLarge => too_large("JWKS", JwksLimits::default().max_bytes),
                    JwksError::TooManyKeys => "JWKS has too many keys".to_string(),
                    JwksError::Malformed(why) => format!("JWKS malformed: {why}"),
                    JwksError::NoUsableKeys(why) => format!("JWKS has no usable key: {why}"),
                }),
            Some(status) => Err(format!("JWKS answered HTTP {status}")),
        };
        match parsed {
            Ok(set) => {
                let ttl_ms = ttl_seconds(answer.cache_control, cfg) * 1000;
                self.version = self.version.wrapping_add(1);
                self.jwks = Some(String::from_utf8_lossy(answer.body).into_owned());
                self.fetched_at_ms = now_ms;
                self.refresh_at_ms = now_ms + ttl_ms;
                self.usable_until_ms = now_ms + ttl_ms + cfg.stale * 1000;
                self.failures = 0;
                self.next_attempt_ms = 0;
                self.last_error = None;
                Ok(set)
            }
            Err(e) => {
                self.fail(e.clone(), cfg, now_ms, jitter);
                Err(e)
            }
        }
    }

    fn fail(&mut self, error: String, _cfg: &RemoteKeys, now_ms: u64, jitter: u64) {
        self.version = self.version.wrapping_add(1);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_ms = now_ms + backoff_ms(self.failures, jitter);
        self.last_error = Some(error);
    }

    /// The usable key set in this record, parsed.
    pub fn key_set(&self, now_ms: u64) -> Option<JwkSet> {
        if !self.has_keys(now_ms) {
            return None;
        }
        let jwks = self.jwks.as_deref()?;
        JwkSet::parse(jwks.as_bytes(), KeyOrigin::Remote, &JwksLimits::default()).ok()
    }
}

/// 1 s, 2 s, 4 s ... up to 60 s, each spread by up to +-20 % from `jitter` (any random value),
/// so that gateways that failed together do not retry together.
pub fn backoff_ms(failures: u32, jitter: u64) -> u64 {
    let base = 1000u64
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF_MS);
    let spread = base / 5;
    base - spread + jitter % (2 * spread + 1)
}

/// The refresh interval: the answer's `max-age` within the configured bounds, or the default.
pub fn ttl_seconds(cache_control: Option<&str>, cfg: &RemoteKeys) -> u64 {
    let max_age = cache_control.and_then(|cc| {
        cc.split(',').find_map(|d| {
            let (name, value) = d.trim().split_once('=')?;
            if name.trim().eq_ignore_ascii_case("max-age") {
                value.trim().trim_matches('"').parse::<u64>().ok()
            } else {
                None
            }
        })
    });
    max_age
        .unwrap_or(cfg.default_ttl)
        .clamp(cfg.min_ttl, cfg.max_ttl)
}

fn too_large(what: &str, limit: usize) -> String {
    format!("{what} too large (over {} KiB)", limit / 1024)
}

/// The `jwks_uri` and, when given, the `introspection_endpoint` of a discovery document.
fn read_discovery(answer: FetchAnswer, issuer: &str) -> Result<(HttpUrl, Option<HttpUrl>), String> {
    match answer.status {
        None => return Err("discovery: no answer (timeout or connection failure)".into()),
        Some(200) => {}
        Some(status) => return Err(format!("discovery answered HTTP {status}")),
    }
    if answer.oversized || answer.body.len() > MAX_DISCOVERY_BYTES {
        return Err(too_large("discovery document", MAX_DISCOVERY_BYTES));
    }
    let doc = crate::json::parse_object(answer.body, crate::json::MAX_DEPTH)
        .map_err(|e| format!("discovery document malformed: {e}"))?;
    // OpenID Connect Discovery 1.0 section 4.3: the issuer must be exactly the configured one.
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(i) if i == issuer => {}
        _ => return Err("discovery document names another issuer".into()),
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "discovery document has no jwks_uri".to_string())?;
    let jwks = HttpUrl::parse(uri).map_err(|e| format!("discovery jwks_uri: {e}"))?;
    // A bad introspection endpoint must not cost the keys: it is only left unknown.
    let introspection = doc
        .get("introspection_endpoint")
        .and_then(|v| v.as_str())
        .and_then(|u| HttpUrl::parse(u).ok());
    Ok((jwks, introspection))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn cfg() -> RemoteKeys {
        RemoteKeys {
            discovery: false,
            url: HttpUrl::parse("http://idp/jwks").unwrap(),
            cluster: "idp".into(),
            timeout_ms: 5000,
            default_ttl: 300,
            min_ttl: 30,
            max_ttl: 3600,
            stale: 600,
            unknown_kid_cooldown: 30,
        }
    }

    fn ok(body: &str) -> FetchAnswer<'_> {
        FetchAnswer {
            status: Some(200),
            cache_control: None,
            body: body.as_bytes(),
            oversized: false,
        }
    }

    #[test]
    fn the_version_wraps_rather_than_overflows() {
        // Found by the keys_record fuzz target: a shared record (bytes any worker may have
        // written) at u64::MAX panicked on the next write with overflow checks on.
        let mut r = KeysRecord {
            version: u64::MAX,
            ..KeysRecord::default()
        };
        r.apply_jwks(ok(JWKS), &cfg(), 1_000, 0).unwrap();
        assert_eq!(r.version, 0);
        r.version = u64::MAX;
        assert!(r.apply_jwks(ok("{}"), &cfg(), 2_000, 0).is_err());
        assert_eq!(r.version, 0, "a change is still a change");
    }

    #[test]
    fn a_new_record_waits_for_its_first_fetch() {
        let r = KeysRecord::default();
        assert_eq!(r.availability(0), Availability::Pending);
        assert_eq!(r.fetch_due(0), Some(FetchReason::Initial));
    }

    #[test]
    fn a_good_answer_makes_keys_ready_until_refresh_and_stale_end() {
        let mut r = KeysRecord::default();
        let set = r.apply_jwks(ok(JWKS), &cfg(), 1_000, 0).unwrap();
        assert_eq!(set.kids(), vec!["k1"]);
        assert_eq!(r.availability(1_000), Availability::Ready);
        assert_eq!(r.fetch_due(1_000 + 299_999), None);
        assert_eq!(r.fetch_due(1_000 + 300_000), Some(FetchReason::Refresh));
        assert!(r.has_keys(1_000 + 899_999));
        assert!(!r.has_keys(1_000 + 900_000), "stale keys end");
        assert_eq!(r.version, 1);
    }

    #[test]
    fn bad_answers_never_replace_good_keys() {
        let mut r = KeysRecord::default();
        r.apply_jwks(ok(JWKS), &cfg(), 0, 0).unwrap();
        let good = r.jwks.clone();
        let now = 300_000;
        for bad in [
            FetchAnswer {
                status: Some(500),
                cache_control: None,
                body: JWKS.as_bytes(),
                oversized: false,
            },
            FetchAnswer {
                status: Some(404),
                cache_control: None,
                body: b"",
                oversized: false,
            },
            FetchAnswer {
                status: None,
                cache_control: None,
                body: b"",
                oversized: false,
            },
            ok("<html>oops</html>"),
            ok(""),
            ok(r#"{"keys":[]}"#),
            ok(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}"#),
        ] {
            assert!(r.apply_jwks(bad, &cfg(), now, 0).is_err());
            assert_eq!(r.jwks, good);
            assert_eq!(
                r.availability(now),
                Availability::Ready,
                "stale keys keep serving"
            );
        }
        assert_eq!(r.failures, 7);
        assert!(r.last_error.is_some());
    }

    #[test]
    fn failures_back_off_with_jitter_and_recovery_resets() {
        let mut r = KeysRecord::default();
        assert!(r
            .apply_jwks(
                FetchAnswer {
                    status: Some(503),
                    cache_control: None,
                    body: b"",
                    oversized: false
                },
                &cfg(),
                0,
                0
            )
            .is_err());
        assert_eq!(r.availability(0), Availability::Unavailable);
        assert_eq!(r.fetch_due(799), None);
        assert_eq!(r.fetch_due(800), Some(FetchReason::Retry));
        assert_eq!(backoff_ms(1, 0), 800);
        assert_eq!(backoff_ms(1, 400), 1200);
        assert_eq!(backoff_ms(2, 0), 1600);
        assert_eq!(backoff_ms(30, 0), 48_000);
        assert!(backoff_ms(30, u64::MAX) <= 72_000);
        r.apply_jwks(ok(JWKS), &cfg(), 2_000, 0).unwrap();
        assert_eq!(
            (r.failures, r.next_attempt_ms, r.last_error.clone()),
            (0, 0, None)
        );
    }

    #[test]
    fn requests_wait_only_when_keys_can_still_come_in_time() {
        let mut r = KeysRecord::default();
        assert_eq!(
            r.availability_for_request(0, false, 5000, false),
            Availability::Pending
        );
        assert_eq!(
            r.availability_for_request(0, true, 5000, true),
            Availability::Unavailable,
            "waited enough"
        );
        let _ = r.apply_jwks(
            FetchAnswer {
                status: Some(500),
                cache_control: None,
                body: b"",
                oversized: false,
            },
            &cfg(),
            0,
            0,
        );
        r.failures = 10; // a long backoff
        r.next_attempt_ms = 60_000;
        assert_eq!(
            r.availability_for_request(1_000, false, 5000, false),
            Availability::Unavailable
        );
        assert_eq!(
            r.availability_for_request(1_000, true, 5000, false),
            Availability::Pending
        );
        assert_eq!(
            r.availability_for_request(56_000, false, 5000, false),
            Availability::Pending
        );
        r.apply_jwks(ok(JWKS), &cfg(), 2_000, 0).unwrap();
        assert_eq!(
            r.availability_for_request(2_000, false, 5000, true),
            Availability::Ready
        );
    }

    #[test]
    fn max_age_is_honoured_within_bounds() {
        let c = cfg();
        assert_eq!(ttl_seconds(Some("public, max-age=600"), &c), 600);
        assert_eq!(ttl_seconds(Some("max-age=5"), &c), 30);
        assert_eq!(ttl_seconds(Some("max-age=999999"), &c), 3600);
        assert_eq!(ttl_seconds(Some("no-cache"), &c), 300);
        assert_eq!(ttl_seconds(None, &c), 300);
        assert_eq!(ttl_seconds(Some("max-age=abc"), &c), 300);
    }

    #[test]
    fn unknown_kid_refetches_are_limited_by_the_cooldown() {
        let c = cfg();
        let mut r = KeysRecord::default();
        r.apply_jwks(ok(JWKS), &c, 0, 0).unwrap();
        assert!(r.may_refetch_for_kid(1_000, &c));
        r.start_fetch(FetchReason::UnknownKid, 1_000);
        assert!(!r.may_refetch_for_kid(30_999, &c));
        assert!(r.may_refetch_for_kid(31_000, &c));
        r.start_fetch(FetchReason::Refresh, 40_000);
        assert!(
            r.may_refetch_for_kid(40_000, &c),
            "scheduled refreshes do not use the cooldown"
        );
    }

    /// The host does not read a body over its limit: the log must say so, not blame the IdP.
    #[test]
    fn an_answer_too_large_to_read_is_named_so_and_keeps_the_keys() {
        let mut r = KeysRecord::default();
        r.apply_jwks(ok(JWKS), &cfg(), 0, 0).unwrap();
        let unread = FetchAnswer {
            status: Some(200),
            cache_control: None,
            body: b"",
            oversized: true,
        };
        let why = r.apply_jwks(unread, &cfg(), 300_000, 0).unwrap_err();
        assert_eq!(why, "JWKS too large (over 256 KiB)");
        assert!(r.jwks.is_some());
        let mut c = cfg();
        c.discovery = true;
        let why = KeysRecord::default()
            .apply_discovery(unread, "http://idp", &c, 0, 0)
            .unwrap_err();
        assert_eq!(why, "discovery document too large (over 64 KiB)");
    }

    #[test]
    fn discovery_finds_the_jwks_uri_of_the_same_issuer() {
        let mut c = cfg();
        c.discovery = true;
        let mut r = KeysRecord::default();
        assert!(r.needs_discovery(&c));
        let doc = r#"{"issuer":"http://idp","jwks_uri":"http://idp/keys","introspection_endpoint":"http://idp/introspect"}"#;
        let url = r.apply_discovery(ok(doc), "http://idp", &c, 0, 0).unwrap();
        assert_eq!(url.path, "/keys");
        assert_eq!(
            r.introspection_uri.as_deref(),
            Some("http://idp/introspect")
        );
        assert_eq!(r.jwks_url(&c), Some(url));
        assert!(!r.needs_discovery(&c));
        let other = r#"{"issuer":"http://evil","jwks_uri":"http://idp/keys"}"#;
        let mut fresh = KeysRecord::default();
        assert!(fresh
            .apply_discovery(ok(other), "http://idp", &c, 0, 0)
            .unwrap_err()
            .contains("another issuer"));
        assert!(fresh
            .apply_discovery(ok(r#"{"issuer":"http://idp"}"#), "http://idp", &c, 0, 0)
            .is_err());
        assert!(fresh
            .apply_discovery(ok("nope"), "http://idp", &c, 0, 0)
            .is_err());
        assert_eq!(fresh.failures, 3);
    }

    #[test]
    fn the_record_round_trips_through_shared_data() {
        let mut r = KeysRecord::default();
        r.apply_jwks(ok(JWKS), &cfg(), 5, 0).unwrap();
        assert_eq!(KeysRecord::decode(&r.encode()), Some(r.clone()));
        assert_eq!(KeysRecord::decode(b"garbage"), None);
        assert_eq!(r.key_set(5).map(|s| s.len()), Some(1));
    }

    #[test]
    fn a_record_encodes_as_serde_encoded_it() {
        let mut r = KeysRecord::default();
        assert_eq!(r.encode(), serde_json::to_vec(&r).unwrap());
        r.apply_jwks(ok(JWKS), &cfg(), 5, 0).unwrap();
        r.last_error = Some("a \"quoted\"\n\u{1} error".into());
        r.jwks_uri = Some("https://idp/jwks".into());
        r.failures = u32::MAX;
        r.version = u64::MAX;
        assert_eq!(r.encode(), serde_json::to_vec(&r).unwrap());
    }

    /// What serde's derived reader, which `decode` replaced, made of `bytes`.
    fn serde_decode(bytes: &[u8]) -> Option<KeysRecord> {
        serde_json::from_slice(bytes).ok()
    }

    #[test]
    fn a_record_decodes_as_serde_decoded_it() {
        let mut r = KeysRecord::default();
        r.apply_jwks(ok(JWKS), &cfg(), 5, 0).unwrap();
        r.last_error = Some("a \"quoted\" error".into());
        r.failures = u32::MAX;
        let full: Value = serde_json::from_slice(&r.encode()).unwrap();
        let Value::Object(members) = &full else {
            panic!("not an object")
        };
        let mut docs = vec![full.clone()];
        // Each member missing, and each set to values of other types and ranges.
        for name in members.keys() {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(name);
            docs.push(without);
            for other in [
                json!(null),
                json!(7),
                json!(-1),
                json!(1.5),
                json!(4_294_967_296u64),
                json!(u64::MAX),
                json!("s"),
                json!(true),
                json!([]),
                json!({}),
            ] {
                let mut changed = full.clone();
                changed[name.as_str()] = other;
                docs.push(changed);
            }
        }
        let mut extra = full.clone();
        extra["later_field"] = json!(1);
        docs.push(extra);
        let mut read = 0;
        for doc in &docs {
            let bytes = doc.to_string().into_bytes();
            let decoded = KeysRecord::decode(&bytes);
            assert_eq!(decoded, serde_decode(&bytes), "{doc}");
            read += usize::from(decoded.is_some());
        }
        assert!(read > 20, "only {read} of {} read", docs.len());
        for text in ["", "[]", "{", "null", r#"{"version": 1, "version": 2}"#] {
            assert_eq!(KeysRecord::decode(text.as_bytes()), None, "{text}");
        }
    }
}
