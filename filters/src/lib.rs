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
//!
//! Host calls that can fail are used through `hostcalls` functions returning `Result`, and
//! every failure ends in a refusal, never a pass.

mod host;
mod introspect;
mod keys;
mod limits;
mod metrics;
mod shared;
mod worker;

use host::{log, now_ms, CallAnswer, OwnedRequest};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tollgate::config::Config;
use tollgate::gate::Gate;
use tollgate::verified::{TokenCache, VerifiedCache};
use worker::{Applied, PendingCall, ProviderKeys, Worker};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { worker: Rc::new(RefCell::new(Worker::new(context_id))), deferred: Vec::new() })
    });
}}

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
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            self.deferred.push(token_id);
            return;
        };
        worker.callback_context = worker.root_id;
        take_call_answer(&mut worker, token_id, body_size);
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
                let Ok(mut worker) = self.worker.try_borrow_mut() else {
                    return false;
                };
                worker.providers = config
                    .providers
                    .iter()
                    .map(|_| ProviderKeys::default())
                    .collect();
                let cache_bytes = config.token_cache_bytes as usize;
                worker.verified = RefCell::new(VerifiedCache::new(
                    config.token_cache_entries as usize,
                    cache_bytes,
                ));
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
        worker.set_clock(now_ms());
        worker.drop_old_batches();
        worker.callback_context = worker.root_id;
        for token in self.deferred.drain(..) {
            if let Some(call) = worker.calls.remove(&token) {
                match call {
                    PendingCall::Introspection { .. } => worker.finish_introspection(call, None),
                    _ => {
                        let failed = CallAnswer {
                            status: None,
                            headers: Vec::new(),
                            body: Vec::new(),
                            oversized: false,
                        };
                        worker.finish_keys_fetch(call, &failed);
                    }
                }
            }
        }
        worker.logs_info = host::logs_info();
        worker.metrics.flush();
        worker.tick_keys();
        worker.sweep_introspections();
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
    /// Whether this request is parked. While the worker is busy with it (resuming it), it is
    /// not parked any more.
    fn is_parked(&self) -> bool {
        self.worker
            .try_borrow()
            .is_ok_and(|w| w.waiters.contains_key(&self.context_id))
    }
}

impl Context for Request {
    // An introspection call made from this request's callback answers here.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return;
        };
        worker.callback_context = self.context_id;
        worker.in_request_callback = true;
        take_call_answer(&mut worker, token_id, body_size);
        worker.in_request_callback = false;
        worker.callback_context = worker.root_id;
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            // Cannot happen with a well-behaved host; refuse rather than pass.
            let _ = hostcalls::send_http_response(503, vec![], Some(b"tollgate busy"));
            return Action::Pause;
        };
        worker.clock_for_request(now_ms);
        worker.callback_context = self.context_id;
        worker.in_request_callback = true;
        let applied = match OwnedRequest::read() {
            Some(request) => worker.handle(self.context_id, request, None),
            None => {
                let _ = hostcalls::send_http_response(400, vec![], Some(b"bad request"));
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
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.is_parked() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.is_parked() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Most requests leave no headers for their response: no lookup then.
        let headers = (self.worker.try_borrow_mut().ok())
            .filter(|w| !w.response_headers.is_empty())
            .and_then(|mut w| w.response_headers.remove(&self.context_id));
        for (name, value) in headers.unwrap_or_default() {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &name, Some(&value));
        }
        Action::Continue
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Ok(mut worker) = self.worker.try_borrow_mut() {
            if !worker.waiters.is_empty() {
                worker.waiters.remove(&self.context_id);
            }
            if !worker.response_headers.is_empty() {
                worker.response_headers.remove(&self.context_id);
            }
        }
    }
}
