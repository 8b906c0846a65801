//! The empty proxy-wasm filter: the floor of any wasm filter in `make bench`.
//!
//! Per request it does the least a real filter does: it reads one request header
//! (`authorization`) and sets one (`x-bench-seen`, "1" when the header was there, else "0"), then
//! lets the request go on. The cost of loading a VM per worker, creating a context per request
//! and crossing the host boundary twice is what it measures.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request;

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let seen = self.get_http_request_header("authorization").is_some();
        self.set_http_request_header("x-bench-seen", Some(if seen { "1" } else { "0" }));
        Action::Continue
    }
}
