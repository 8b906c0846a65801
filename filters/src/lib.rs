//! The proxy-wasm glue: it translates host callbacks into engine calls and never decides.
//!
//! One VM runs per Envoy worker thread. Each has a root context ([`Root`]) that owns the
//! [`Worker`] state (the compiled configuration, a parsed copy of each provider's keys, the
//! requests waiting for keys, the calls in flight) and HTTP contexts ([`Request`]) that read the
//! request once, ask [`tollgate::gate::Gate::decide`], and apply the verdict.
//!
//! Keys are shared across workers through the host's shared data (see [`shared`]): a record per
//! provider and a lease that lets exactly one worker fetch at a time. Requests that need keys
//! not fetched yet are paused and re-decided by the root when the record changes or the wait
//! times out. Host calls that can fail are used through `hostcalls` functions returning
//! `Result`, and every failure ends in a refusal, never a pass.

mod shared;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use shared::Lease;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use tollgate::audit::AuditEvent;
use tollgate::config::{Config, KeySource, ProviderId, RemoteKeys};
use tollgate::denial::Denial;
use tollgate::gate::{Decision, Gate, Keyring, KeysView, Verdict};
use tollgate::jwk::{JwkSet, JwksLimits};
use tollgate::keys::{Availability, FetchAnswer, FetchReason, KeysRecord};
use tollgate::request::{HeaderEdit, Request as EngineRequest};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { worker: Rc::new(RefCell::new(Worker::new(context_id))), deferred: Vec::new() })
    });
}}

/// How often the root looks at shared keys, starts due fetches and wakes waiting requests.
const TICK: Duration = Duration::from_millis(100);
/// Requests a worker keeps paused while keys are fetched; more are refused with 503.
const MAX_WAITING: usize = 4096;

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// A request's headers, owned, kept while it waits for keys.
struct OwnedRequest {
    method: String,
    path: String,
    authority: String,
    request_id: Option<String>,
    headers: Vec<(String, String)>,
}

impl OwnedRequest {
    fn read() -> Option<OwnedRequest> {
        let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()?;
        let headers: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        Some(OwnedRequest {
            method: pseudo(":method")?,
            path: pseudo(":path")?,
            authority: pseudo(":authority").unwrap_or_default(),
            request_id: pseudo("x-request-id"),
            headers,
        })
    }

    fn view(&self) -> EngineRequest<'_> {
        EngineRequest {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            headers: &self.headers,
        }
    }
}

/// What became of a request after its verdict was carried out.
enum Applied {
    Passed,
    Refused,
    Parked,
}

/// A paused request.
struct Waiter {
    provider: ProviderId,
    /// The record version it saw when it started waiting.
    seen_version: u64,
    deadline_ms: u64,
    request: OwnedRequest,
}

/// One provider's keys as this worker knows them.
#[derive(Default)]
struct ProviderKeys {
    record: KeysRecord,
    set: Option<JwkSet>,
    /// A call of ours for this provider started at this time and has not answered (we hold
    /// the lease). A call that never answers stops counting after twice its timeout.
    fetching_since_ms: Option<u64>,
    /// An unknown kid asked for a refetch that has not started yet.
    kid_refetch_wanted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Discovery,
    Jwks,
}

struct PendingCall {
    provider: ProviderId,
    kind: CallKind,
}

struct Worker {
    root_id: u32,
    gate: Option<Rc<Gate>>,
    keys: Vec<ProviderKeys>,
    waiters: BTreeMap<u32, Waiter>,
    calls: HashMap<u32, PendingCall>,
    /// Set on the last chance of a waiting request: nothing is worth waiting for any more.
    final_attempt: bool,
    now_ms: u64,
    /// A request's own callback is running (not the root's).
    in_request_callback: bool,
}

impl Worker {
    fn new(root_id: u32) -> Worker {
        Worker {
            root_id,
            gate: None,
            keys: Vec::new(),
            waiters: BTreeMap::new(),
            calls: HashMap::new(),
            final_attempt: false,
            now_ms: 0,
            in_request_callback: false,
        }
    }

    fn remote(&self, id: ProviderId) -> Option<&RemoteKeys> {
        match &self.gate.as_ref()?.config.provider(id)?.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Inline(_) => None,
        }
    }

    fn lease(&self, id: ProviderId) -> Option<Lease> {
        let gate = self.gate.as_ref()?;
        let provider = gate.config.provider(id)?;
        Some(Lease::new(&provider.name, self.remote(id)?))
    }

    fn jitter(&self) -> u64 {
        // Spread retries of workers and gateways that failed together.
        self.now_ms
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(u64::from(self.root_id))
            >> 17
    }

    /// Reads the shared record of one provider; re-parses keys when it changed.
    fn sync(&mut self, id: ProviderId) {
        let Some(lease) = self.lease(id) else { return };
        let Some(record) = lease.read_record() else {
            return;
        };
        let now = self.now_ms;
        if let Some(local) = self.keys.get_mut(id) {
            if record.version != local.record.version
                || (local.set.is_none() && record.has_keys(now))
            {
                local.set = record.key_set(now);
                local.record = record;
            }
        }
    }

    /// Starts a fetch if one is due or asked for and no worker is fetching.
    fn maybe_fetch(&mut self, id: ProviderId) {
        let Some(cfg) = self.remote(id).cloned() else {
            return;
        };
        let now = self.now_ms;
        if self.is_fetching(id) {
            return;
        }
        let Some(local) = self.keys.get(id) else {
            return;
        };
        let reason = if local.kid_refetch_wanted && local.record.may_refetch_for_kid(now, &cfg) {
            FetchReason::UnknownKid
        } else if let Some(reason) = local.record.fetch_due(now) {
            reason
        } else {
            return;
        };
        let Some(lease) = self.lease(id) else { return };
        if !lease.acquire(now, cfg.timeout_ms * 2 + 1000) {
            return;
        }
        // Under the lease, start from the freshest record.
        self.sync(id);
        let Some(local) = self.keys.get_mut(id) else {
            return;
        };
        local.kid_refetch_wanted = false;
        local.record.start_fetch(reason, now);
        let kind = if local.record.needs_discovery(&cfg) {
            CallKind::Discovery
        } else {
            CallKind::Jwks
        };
        let url = match kind {
            CallKind::Discovery => Some(cfg.url.clone()),
            CallKind::Jwks => local.record.jwks_url(&cfg),
        };
        match url {
            Some(url) => self.dispatch(id, kind, &cfg, &url),
            None => {
                // A discovery provider that lost its jwks_uri: discover again.
                self.dispatch(id, CallKind::Discovery, &cfg, &cfg.url.clone());
            }
        }
    }

    fn is_fetching(&self, id: ProviderId) -> bool {
        let timeout = self.remote(id).map_or(0, |r| r.timeout_ms);
        self.keys
            .get(id)
            .and_then(|k| k.fetching_since_ms)
            .is_some_and(|since| self.now_ms < since + 2 * timeout + 1000)
    }

    /// Calls the IdP. Only ever called from a root callback: the SDK delivers an answer to the
    /// context whose callback made the call, and a request's context may be gone by then.
    fn dispatch(
        &mut self,
        id: ProviderId,
        kind: CallKind,
        cfg: &RemoteKeys,
        url: &tollgate::config::HttpUrl,
    ) {
        let headers = vec![
            (":method", "GET"),
            (":path", url.path.as_str()),
            (":authority", url.authority.as_str()),
            (":scheme", url.scheme.as_str()),
            ("accept", "application/json"),
            ("user-agent", "tollgate"),
        ];
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match hostcalls::dispatch_http_call(&cfg.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.calls.insert(token, PendingCall { provider: id, kind });
                let now = self.now_ms;
                if let Some(local) = self.keys.get_mut(id) {
                    local.fetching_since_ms = Some(now);
                }
            }
            Err(status) => {
                let answer = FetchAnswer {
                    status: None,
                    cache_control: None,
                    body: b"",
                };
                log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: cannot call cluster {} for {url}: {status:?}",
                        cfg.cluster
                    ),
                );
                self.finish_fetch(id, kind, answer);
            }
        }
    }

    /// Applies an answer to the shared record; chains discovery to the JWKS fetch.
    fn finish_fetch(&mut self, id: ProviderId, kind: CallKind, answer: FetchAnswer) {
        let Some(cfg) = self.remote(id).cloned() else {
            return;
        };
        let Some(issuer) = self
            .gate
            .as_ref()
            .and_then(|g| g.config.provider(id))
            .map(|p| p.issuer.clone())
        else {
            return;
        };
        let Some(lease) = self.lease(id) else { return };
        let now = self.now_ms;
        let jitter = self.jitter();
        let name = lease.provider_name().to_string();
        let Some(local) = self.keys.get_mut(id) else {
            return;
        };
        local.fetching_since_ms = None;
        let mut record = local.record.clone();
        let next = match kind {
            CallKind::Discovery => match record.apply_discovery(answer, &issuer, &cfg, now, jitter)
            {
                Ok(url) => Some(url),
                Err(e) => {
                    log(
                        LogLevel::Warn,
                        &format!("tollgate: provider {name}: {e}; keeping the last good keys"),
                    );
                    None
                }
            },
            CallKind::Jwks => {
                match record.apply_jwks(answer, &cfg, now, jitter) {
                    Ok(set) => log(
                        LogLevel::Info,
                        &format!(
                            "tollgate: provider {name}: fetched {} key(s) ({})",
                            set.len(),
                            set.kids().join(", ")
                        ),
                    ),
                    Err(e) => log(
                        LogLevel::Warn,
                        &format!("tollgate: provider {name}: {e}; keeping the last good keys"),
                    ),
                }
                None
            }
        };
        record.version = record.version.max(local.record.version) + 1;
        lease.write_record(&record);
        local.set = record.key_set(now);
        local.record = record;
        match next {
            Some(url) => {
                self.dispatch(id, CallKind::Jwks, &cfg, &url);
            }
            None => lease.release(),
        }
    }

    /// Re-decides waiting requests whose provider's keys changed or whose time is up.
    fn wake_waiters(&mut self) {
        let now = self.now_ms;
        let ready: Vec<u32> = self
            .waiters
            .iter()
            .filter(|(_, w)| {
                let version = self.keys.get(w.provider).map_or(0, |k| k.record.version);
                version != w.seen_version || now >= w.deadline_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for context_id in ready {
            let Some(waiter) = self.waiters.remove(&context_id) else {
                continue;
            };
            if hostcalls::set_effective_context(context_id).is_err() {
                continue; // the request is gone
            }
            self.final_attempt = now >= waiter.deadline_ms;
            let outcome = self.decide(&waiter.request);
            self.final_attempt = false;
            match outcome {
                Some(decision) => {
                    self.apply(
                        context_id,
                        waiter.request,
                        decision,
                        Some(waiter.deadline_ms),
                    );
                }
                None => {
                    respond(
                        &waiter.request,
                        &self.realm(),
                        Denial::KeysUnavailable,
                        &Default::default(),
                        now,
                        self.audit(),
                    );
                }
            }
        }
        let _ = hostcalls::set_effective_context(self.root_id);
    }

    fn wait_ms(&self) -> u64 {
        self.gate
            .as_ref()
            .map_or(5000, |g| g.config.keys_wait_timeout_ms)
    }

    fn realm(&self) -> String {
        self.gate
            .as_ref()
            .map_or_else(|| "tollgate".to_string(), |g| g.config.realm.clone())
    }

    fn audit(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.config.audit)
    }

    fn decide(&self, request: &OwnedRequest) -> Option<Decision> {
        let gate = self.gate.clone()?;
        Some(gate.decide(&request.view(), self, self.now_ms / 1000))
    }

    /// Carries out a decision on the current effective context. `parked_until` is the deadline
    /// of a request that was waiting already (it is resumed, and its deadline kept).
    fn apply(
        &mut self,
        context_id: u32,
        request: OwnedRequest,
        decision: Decision,
        parked_until: Option<u64>,
    ) -> Applied {
        let now = self.now_ms;
        match decision.verdict {
            Verdict::Allow(edits) => {
                for edit in &edits {
                    let result = match edit {
                        HeaderEdit::Remove(name) => {
                            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
                        }
                        HeaderEdit::Set(name, value) => {
                            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                        }
                    };
                    if result.is_err() {
                        // An identity header we could not set or remove must not reach the upstream.
                        respond(
                            &request,
                            &self.realm(),
                            Denial::BadRequest("headers could not be rewritten"),
                            &decision.facts,
                            now,
                            self.audit(),
                        );
                        return Applied::Refused;
                    }
                }
                if self.audit() {
                    audit_line(&request, "allow", 200, "ok", &decision.facts, now);
                }
                if parked_until.is_some() {
                    let _ = hostcalls::resume_http_request();
                }
                Applied::Passed
            }
            Verdict::Deny(denial) => {
                respond(
                    &request,
                    &self.realm(),
                    denial,
                    &decision.facts,
                    now,
                    self.audit(),
                );
                Applied::Refused
            }
            Verdict::Wait { provider, refetch } => {
                if self.waiters.len() >= MAX_WAITING {
                    respond(
                        &request,
                        &self.realm(),
                        Denial::KeysUnavailable,
                        &decision.facts,
                        now,
                        self.audit(),
                    );
                    return Applied::Refused;
                }
                if let Some(local) = self.keys.get_mut(provider) {
                    local.kid_refetch_wanted |= refetch;
                }
                // From a request's callback the fetch starts at the next tick (see `dispatch`).
                if !self.in_request_callback {
                    self.maybe_fetch(provider);
                }
                let seen_version = self.keys.get(provider).map_or(0, |k| k.record.version);
                let wait_ms = self.wait_ms();
                let deadline_ms = parked_until.unwrap_or(now + wait_ms);
                self.waiters.insert(
                    context_id,
                    Waiter {
                        provider,
                        seen_version,
                        deadline_ms,
                        request,
                    },
                );
                Applied::Parked
            }
        }
    }
}

impl Keyring for Worker {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        let Some(gate) = &self.gate else {
            return KeysView::Unavailable;
        };
        let Some(p) = gate.config.provider(provider) else {
            return KeysView::Unavailable;
        };
        if let KeySource::Inline(set) = &p.keys {
            return KeysView::Ready(set);
        }
        let Some(local) = self.keys.get(provider) else {
            return KeysView::Unavailable;
        };
        let fetching = self.is_fetching(provider);
        let availability = local.record.availability_for_request(
            self.now_ms,
            fetching,
            self.wait_ms(),
            self.final_attempt,
        );
        match (&local.set, availability) {
            (Some(set), Availability::Ready) => KeysView::Ready(set),
            (_, Availability::Pending) => KeysView::Pending,
            _ => KeysView::Unavailable,
        }
    }

    fn may_refetch(&self, provider: ProviderId) -> bool {
        if self.final_attempt {
            return false;
        }
        match (self.remote(provider), self.keys.get(provider)) {
            (Some(cfg), Some(local)) => local.record.may_refetch_for_kid(self.now_ms, cfg),
            _ => false,
        }
    }
}

fn audit_line(
    request: &OwnedRequest,
    decision: &str,
    status: u32,
    reason: &str,
    facts: &tollgate::audit::AuditFacts,
    now: u64,
) {
    let line = AuditEvent {
        now_ms: now,
        request_id: request.request_id.as_deref(),
        method: &request.method,
        path: &request.path,
        decision,
        status,
        reason,
        facts,
    }
    .to_json_line();
    log(LogLevel::Info, &line);
}

/// Sends the denial as a local reply on the current effective context.
fn respond(
    request: &OwnedRequest,
    realm: &str,
    denial: Denial,
    facts: &tollgate::audit::AuditFacts,
    now: u64,
    audit: bool,
) {
    let answer = denial.response(realm, request.request_id.as_deref());
    if audit {
        audit_line(request, "deny", answer.status, denial.code(), facts, now);
    }
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if hostcalls::send_http_response(answer.status, headers, Some(answer.body.as_bytes())).is_err()
    {
        let _ = hostcalls::reset_http_request();
    }
}

struct Root {
    worker: Rc<RefCell<Worker>>,
    /// Answers that arrived while the worker was busy (a host that fails a call inline, during
    /// the dispatch itself): handled as failed calls at the next tick.
    deferred: Vec<u32>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            self.deferred.push(token_id);
            return;
        };
        worker.now_ms = now_ms();
        let Some(call) = worker.calls.remove(&token_id) else {
            return;
        };
        let headers =
            hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let status = header(":status").and_then(|s| s.parse::<u32>().ok());
        let cache_control = header("cache-control");
        let limit = JwksLimits::default().max_bytes;
        // An oversized body is not read: an empty one fails parsing, and the keys stay.
        let body = if body_size <= limit {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let status = if body_size > limit { Some(413) } else { status };
        let answer = FetchAnswer {
            status,
            cache_control: cache_control.as_deref(),
            body: &body,
        };
        worker.finish_fetch(call.provider, call.kind, answer);
        worker.wake_waiters();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let mut worker = self.worker.borrow_mut();
                worker.keys = config
                    .providers
                    .iter()
                    .map(|_| ProviderKeys::default())
                    .collect();
                worker.gate = Some(Rc::new(Gate::new(config)));
                worker.now_ms = now_ms();
                for id in 0..worker.keys.len() {
                    if let Some(lease) = worker.lease(id) {
                        lease.ensure_exists();
                    }
                    worker.sync(id);
                }
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(errors) => {
                for e in &errors.0 {
                    log(
                        LogLevel::Error,
                        &format!("tollgate: invalid configuration: {e}"),
                    );
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return;
        };
        worker.now_ms = now_ms();
        for token in self.deferred.drain(..) {
            if let Some(call) = worker.calls.remove(&token) {
                let answer = FetchAnswer {
                    status: None,
                    cache_control: None,
                    body: b"",
                };
                worker.finish_fetch(call.provider, call.kind, answer);
            }
        }
        for id in 0..worker.keys.len() {
            if worker.remote(id).is_some() {
                worker.sync(id);
                worker.maybe_fetch(id);
            }
        }
        worker.wake_waiters();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            worker: Rc::clone(&self.worker),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    worker: Rc<RefCell<Worker>>,
}

impl Request {
    /// Whether this request is parked. While the root works on it (and holds the worker), it
    /// is not parked any more.
    fn is_waiting(&self) -> bool {
        self.worker
            .try_borrow()
            .is_ok_and(|w| w.waiters.contains_key(&self.context_id))
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            // Cannot happen with a well-behaved host; refuse rather than pass.
            let _ = hostcalls::send_http_response(503, vec![], Some(b"tollgate busy"));
            return Action::Pause;
        };
        worker.now_ms = now_ms();
        worker.in_request_callback = true;
        let applied = decide_request(&mut worker, self.context_id);
        worker.in_request_callback = false;
        match applied {
            Applied::Passed => Action::Continue,
            Applied::Refused | Applied::Parked => Action::Pause,
        }
    }

    // While a request waits for keys, its body and trailers must not carry the headers on.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.is_waiting() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.is_waiting() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Ok(mut worker) = self.worker.try_borrow_mut() {
            worker.waiters.remove(&self.context_id);
        }
    }
}

/// Reads the request on the current context, decides, and carries the verdict out.
fn decide_request(worker: &mut Worker, context_id: u32) -> Applied {
    let Some(request) = OwnedRequest::read() else {
        let _ = hostcalls::send_http_response(400, vec![], Some(b"bad request"));
        return Applied::Refused;
    };
    let Some(mut decision) = worker.decide(&request) else {
        // Not configured: fail closed.
        respond(
            &request,
            "tollgate",
            Denial::KeysUnavailable,
            &Default::default(),
            worker.now_ms,
            true,
        );
        return Applied::Refused;
    };
    // Keys missing here may already be in shared data (fetched by another worker).
    if let Verdict::Wait { provider, .. } = decision.verdict {
        worker.sync(provider);
        if let Some(again) = worker.decide(&request) {
            decision = again;
        }
    }
    worker.apply(context_id, request, decision, None)
}
