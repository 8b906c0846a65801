//! Thin, non-panicking wrappers over the proxy-wasm host calls the filter uses.
//!
//! Every function here returns what the host said or a safe default; none decides anything.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::time::UNIX_EPOCH;

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Whether the host writes info-level lines for this plugin (when it cannot say: yes).
pub fn logs_info() -> bool {
    hostcalls::get_log_level().map_or(true, |level| (level as u32) <= (LogLevel::Info as u32))
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// A request's headers, owned: kept while the request waits for keys or introspection.
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub request_id: Option<String>,
    /// The downstream peer's IP address (without port).
    pub client_address: String,
    pub headers: Vec<(String, String)>,
}

impl OwnedRequest {
    /// Reads the current request's headers; `None` without `:method` or `:path`.
    pub fn read(with_client_address: bool) -> Option<OwnedRequest> {
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
        let client_address = if with_client_address {
            client_address().unwrap_or_default()
        } else {
            String::new()
        };
        Some(OwnedRequest {
            method: pseudo(":method")?,
            path: pseudo(":path")?,
            authority: pseudo(":authority").unwrap_or_default(),
            request_id: pseudo("x-request-id"),
            client_address,
            headers,
        })
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn view(&self) -> tollgate::request::Request<'_> {
        tollgate::request::Request {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            headers: &self.headers,
            client_address: &self.client_address,
        }
    }
}

/// `source.address` ("10.0.0.1:5555", "[::1]:5555") without its port.
fn client_address() -> Option<String> {
    let bytes = hostcalls::get_property(vec!["source", "address"]).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let host = match text.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest).to_string(),
        None => text
            .rsplit_once(':')
            .map_or(text.clone(), |(h, _)| h.to_string()),
    };
    Some(host)
}

/// An answer to a dispatched call: status (`None` on timeout or reset), headers, and the body
/// unless it is larger than `max_body` (then `oversized`).
pub struct CallAnswer {
    pub status: Option<u32>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub oversized: bool,
}

impl CallAnswer {
    pub fn read(body_size: usize, max_body: usize) -> CallAnswer {
        let headers =
            hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let oversized = body_size > max_body;
        let body = if oversized || body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let mut answer = CallAnswer {
            status: None,
            headers,
            body,
            oversized,
        };
        answer.status = answer.header(":status").and_then(|s| s.parse().ok());
        answer
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}
