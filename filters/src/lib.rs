//! The proxy-wasm glue: it translates host callbacks into engine calls and never decides.
//!
//! One VM runs per Envoy worker thread. Each has a root context (`Root`) and HTTP contexts
//! (`Request`) that share one `worker::Worker`: the compiled configuration, a parsed copy of
//! each provider's keys, the requests parked while keys or introspection answers arrive, and the
//! calls in flight. A request's callback reads the request once and hands it to
//! `Worker::handle`, which asks the engine (`tollgate::gate::Gate::decide`) and carries the
//! verdict out.
//!
//! - `worker.rs`: the request loop, parked requests, the engine's view of the host.
//! - `keys.rs`: one JWKS fetch for all workers (shared record + lease).
//! - `introspect.rs`: one introspection call per token for all workers, shared answer cache.
//! - `limits.rs`: exact rate-limit counting with compare-and-swap.
//! - `shared.rs`, `metrics.rs`, `host.rs`: the host's shared data, metrics and calls.
//! - `abi.rs`: the proxy-wasm host calls themselves, and why the filter does not use the SDK.
//!
//! The callbacks the host may call are the `proxy_on_*` functions at the end of this file, and
//! only those the filter has work in: a host enters the VM for each one a module exports. Host
//! calls return `Result`, and every failure ends in a refusal, never a pass.

mod abi;
mod host;
mod introspect;
mod keys;
mod limits;
mod metrics;
mod shared;
mod worker;

use abi::{Action, BufferType, HeaderMap, LogLevel};
use host::{answer_here, log, now_ms, CallAnswer, OwnedRequest};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tollgate::config::Config;
use tollgate::gate::Gate;
use tollgate::verified::{TokenCache, VerifiedCache};
use worker::{Applied, PendingCall, ProviderKeys, Worker};

/// How often the root looks at shared keys, starts due fetches and wakes parked requests.
const TICK: Duration = Duration::from_millis(100);

/// Hands an answer to a dispatched call to the worker (from the root or a request context).
fn take_call_answer(worker: &mut Worker, token_id: u32, body_size: usize) {
    worker.now_ms = now_ms();
    let Some(call) = worker.calls.remove(&token_id) else {
        return;
    };
    match call {
        PendingCall::Introspection { .. } => {
            let answer = CallAnswer::read(body_size, introspect::max_introspection_answer());
            worker.finish_introspection(call, Some(&answer));
        }
        PendingCall::Discovery { .. } | PendingCall::Jwks { .. } => {
            let answer = CallAnswer::read(body_size, keys::max_keys_answer());
            worker.finish_keys_fetch(call, &answer);
            worker.wake_waiters();
        }
    }
}

/// A worker's verified-token cache, keyed by a secret this VM alone knows. Without randomness
/// from the host there is no secret, and no cache: every token is verified (another worker's
/// verification, in shared data, still serves).
fn verified_cache(config: &Config) -> VerifiedCache {
    match abi::random_bytes() {
        Ok(secret) => VerifiedCache::new(
            config.token_cache_entries as usize,
            config.token_cache_bytes as usize,
            secret,
        ),
        Err(status) => {
            log(
                LogLevel::Error,
                &format!(
                    "tollgate: the host gave no random bytes (status {}): tokens are not \
                     remembered by this worker",
                    status.0
                ),
            );
            VerifiedCache::off()
        }
    }
}

/// A plugin's root context: its configuration, ticks and calls, and the worker its requests
/// share. One VM may hold several (plugins sharing a `vm_id`), each with its own worker.
struct Root {
    worker: Rc<RefCell<Worker>>,
    /// Answers that arrived while the worker was busy (a host that fails a call inline, during
    /// the dispatch itself): handled as failed calls at the next tick.
    deferred: RefCell<Vec<u32>>,
}

impl Root {
    fn on_http_call_response(&self, token_id: u32, body_size: usize) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            if let Ok(mut deferred) = self.deferred.try_borrow_mut() {
                deferred.push(token_id);
            }
            return;
        };
        worker.callback_context = worker.root_id;
        take_call_answer(&mut worker, token_id, body_size);
    }

    fn on_configure(&self) -> bool {
        let bytes = abi::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                let Ok(mut worker) = self.worker.try_borrow_mut() else {
                    return false;
                };
                worker.providers = config
                    .providers
                    .iter()
                    .map(|_| ProviderKeys::default())
                    .collect();
                let cache_bytes = config.token_cache_bytes as usize;
                worker.verified = RefCell::new(verified_cache(&config));
                let introspected = config
                    .providers
                    .iter()
                    .filter_map(|p| p.introspection.as_ref());
                let entries = introspected.map(|i| i.cache_entries).max().unwrap_or(0);
                worker.introspected = RefCell::new(TokenCache::new(entries as usize, cache_bytes));
                worker.config_tag = shared::fingerprint(&String::from_utf8_lossy(&bytes));
                worker.gate = Some(Rc::new(Gate::new(config)));
                worker.batches.clear();
                worker.now_ms = now_ms();
                worker.logs_info = host::logs_info();
                for id in 0..worker.providers.len() {
                    worker.sync_keys(id);
                }
                let _ = abi::set_tick_period(TICK);
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

    fn on_tick(&self) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return;
        };
        worker.set_clock(now_ms());
        worker.drop_old_batches();
        worker.callback_context = worker.root_id;
        let deferred = (self.deferred.try_borrow_mut())
            .map(|mut deferred| std::mem::take(&mut *deferred))
            .unwrap_or_default();
        for token in deferred {
            if let Some(call) = worker.calls.remove(&token) {
                match call {
                    PendingCall::Introspection { .. } => worker.finish_introspection(call, None),
                    _ => worker.finish_keys_fetch(call, &CallAnswer::failed()),
                }
            }
        }
        worker.logs_info = host::logs_info();
        worker.metrics.flush();
        worker.tick_keys();
        worker.sweep_introspections();
        worker.wake_waiters();
    }
}

/// An HTTP request's context: nothing but its id and its root, whose worker it shares. Made
/// for each callback from the root filed under the id (`request`), so that a request costs no
/// allocation of its own.
struct Request {
    context_id: u32,
    root: Rc<Root>,
}

impl Request {
    /// Whether this request is parked. While the worker is busy with it (resuming it), it is
    /// not parked any more.
    fn is_parked(&self) -> bool {
        self.root
            .worker
            .try_borrow()
            .is_ok_and(|w| w.waiters.contains_key(&self.context_id))
    }

    fn on_request_headers(&self) -> Action {
        let Ok(mut worker) = self.root.worker.try_borrow_mut() else {
            // Cannot happen with a well-behaved host; refuse rather than pass.
            answer_here(503, &[], b"tollgate busy");
            return Action::Pause;
        };
        worker.clock_for_request(now_ms);
        worker.callback_context = self.context_id;
        worker.in_request_callback = true;
        let applied = match OwnedRequest::read() {
            Some(request) => worker.handle(self.context_id, request, None),
            None => {
                answer_here(400, &[], b"bad request");
                Applied::Refused
            }
        };
        worker.in_request_callback = false;
        worker.callback_context = worker.root_id;
        match applied {
            Applied::Passed => Action::Continue,
            Applied::Refused | Applied::Parked => Action::Pause,
        }
    }

    // While a request is parked, its body and trailers must not carry its headers on.
    fn hold_while_parked(&self) -> Action {
        if self.is_parked() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_response_headers(&self) -> Action {
        // Most requests leave no headers for their response: no lookup then.
        let headers = (self.root.worker.try_borrow_mut().ok())
            .filter(|w| !w.response_headers.is_empty())
            .and_then(|mut w| w.response_headers.remove(&self.context_id));
        for (name, value) in headers.unwrap_or_default() {
            let _ = abi::set_map_value(HeaderMap::Response, &name, Some(&value));
        }
        Action::Continue
    }

    /// The request is gone: nothing of it stays with the worker.
    fn on_delete(&self) {
        if let Ok(mut worker) = self.root.worker.try_borrow_mut() {
            if !worker.waiters.is_empty() {
                worker.waiters.remove(&self.context_id);
            }
            if !worker.response_headers.is_empty() {
                worker.response_headers.remove(&self.context_id);
            }
        }
    }
}

/// The VM's contexts, by id: a root, and each request's root. A callback clones a root's `Rc`
/// out of here and lets go of the map before running, so a host that calls in again from a
/// host call finds the map free.
#[derive(Default)]
struct Contexts {
    roots: FxHashMap<u32, Rc<Root>>,
    requests: FxHashMap<u32, Rc<Root>>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

fn root(context_id: u32) -> Option<Rc<Root>> {
    CONTEXTS.with(|c| c.try_borrow().ok()?.roots.get(&context_id).cloned())
}

fn request(context_id: u32) -> Option<Request> {
    let root = CONTEXTS.with(|c| c.try_borrow().ok()?.requests.get(&context_id).cloned())?;
    Some(Request { context_id, root })
}

// The callbacks. The host sets the effective context to the callback's before each, and reads
// the ABI's version from the name of `proxy_abi_version_0_2_1`. A host calls no callback a
// module does not export: there is no `proxy_on_done` (a context is always done),
// `proxy_on_log` (the audit line is written with the decision), `proxy_on_response_body`,
// `proxy_on_vm_start` or stream (TCP) callback.

mod callbacks {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    extern "C" {
        fn __wasm_call_ctors();
    }

    /// wasi's reactor entry point, which the host calls first: static constructors.
    #[cfg(target_arch = "wasm32")]
    #[no_mangle]
    pub extern "C" fn _initialize() {
        // SAFETY: the linker's function; the host calls `_initialize` once, before anything.
        unsafe { __wasm_call_ctors() }
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    /// A root context (`root_context_id` 0) or an HTTP request's context under a root.
    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
        CONTEXTS.with(|c| {
            let Ok(mut contexts) = c.try_borrow_mut() else {
                return;
            };
            if root_context_id == 0 {
                let worker = Rc::new(RefCell::new(Worker::new(context_id)));
                let deferred = RefCell::new(Vec::new());
                contexts
                    .roots
                    .insert(context_id, Rc::new(Root { worker, deferred }));
            } else if let Some(root) = contexts.roots.get(&root_context_id) {
                let root = Rc::clone(root);
                contexts.requests.insert(context_id, root);
            }
        });
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context_id: u32) {
        // Handled once the map is free again (a request's `on_delete` borrows its worker).
        let removed = CONTEXTS.with(|c| {
            let mut contexts = c.try_borrow_mut().ok()?;
            // An id is a request's or a root's: a request's (every request) looks up one map.
            let request = contexts.requests.remove(&context_id);
            let root = match request {
                Some(_) => None,
                None => contexts.roots.remove(&context_id),
            };
            Some((request, root))
        });
        if let Some((Some(root), _)) = removed {
            Request { context_id, root }.on_delete();
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(context_id: u32, _configuration_size: usize) -> u32 {
        root(context_id).is_some_and(|root| root.on_configure()) as u32
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(context_id: u32) {
        if let Some(root) = root(context_id) {
            root.on_tick();
        }
    }

    /// An answer to a dispatched call. Envoy calls it on the root context, another host may on
    /// the request that made the call; either way the root's worker takes it. Whoever waits for
    /// it is parked, and is handled again from there (`Worker::wake_waiters`), so an answer
    /// still serves when the request that asked is gone.
    #[no_mangle]
    pub extern "C" fn proxy_on_http_call_response(
        context_id: u32,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let root = root(context_id).or_else(|| Some(request(context_id)?.root));
        if let Some(root) = root {
            root.on_http_call_response(token_id, body_size);
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(
        context_id: u32,
        _headers: usize,
        _end: u32,
    ) -> Action {
        match request(context_id) {
            Some(request) => request.on_request_headers(),
            None => {
                answer_here(500, &[], b"tollgate: unknown request context");
                Action::Pause
            }
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(context_id: u32, _size: usize, _end: u32) -> Action {
        request(context_id).map_or(Action::Pause, |r| r.hold_while_parked())
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_trailers(context_id: u32, _trailers: usize) -> Action {
        request(context_id).map_or(Action::Pause, |r| r.hold_while_parked())
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(
        context_id: u32,
        _headers: usize,
        _end: u32,
    ) -> Action {
        request(context_id).map_or(Action::Continue, |r| r.on_response_headers())
    }
}

#[cfg(test)]
mod tests {
    use super::callbacks::{proxy_on_context_create, proxy_on_delete};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// The system allocator, counting each thread's allocations.
    struct Counting;

    // SAFETY: every call is the system allocator's; the count has no destructor and allocates
    // nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            System.alloc(layout)
        }

        unsafe fn dealloc(&self, data: *mut u8, layout: Layout) {
            System.dealloc(data, layout)
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    #[test]
    fn a_request_s_context_costs_no_allocation() {
        proxy_on_context_create(1, 0);
        // The first request grows the map of contexts; the ones after fit in it.
        proxy_on_context_create(2, 1);
        proxy_on_delete(2);
        let before = ALLOCATIONS.with(Cell::get);
        for id in 3..100 {
            proxy_on_context_create(id, 1);
            proxy_on_delete(id);
        }
        assert_eq!(ALLOCATIONS.with(Cell::get), before);
        proxy_on_delete(1);
    }
}
