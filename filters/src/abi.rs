//! The proxy-wasm ABI (0.2.1), as much of it as the filter uses: the host calls it makes.
//!
//! Why not the Rust SDK's: a host enters the VM for every callback a module exports, and the
//! SDK exports all of them. Envoy then calls `proxy_on_response_body`, `proxy_on_log` and
//! `proxy_on_done` on every request, which tollgate has nothing to do in: ~1,700 instructions
//! of Envoy and V8 each, together an eighth of what the filter cost a request. The filter
//! exports only the callbacks it implements (`lib.rs`). Writing the host calls here also means
//! none of them panics on a status it did not expect (the SDK's do): every one returns the
//! host's [`Status`], and the caller refuses rather than passes.
//!
//! Host calls that hand back data do so in memory the host got from
//! [`proxy_on_memory_allocate`], which becomes a `Vec<u8>` of that length here: a buffer kept
//! from an answer read before ([`recycle`]), or an allocation of exactly that many bytes.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::ptr::{null, null_mut};
use std::time::Duration;

/// What a host call answered other than success (proxy-wasm's `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    pub const NOT_FOUND: Status = Status(1);
    pub const CAS_MISMATCH: Status = Status(8);
}

fn checked(status: u32) -> Result<(), Status> {
    match status {
        0 => Ok(()),
        other => Err(Status(other)),
    }
}

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
    CallResponse = 6,
}

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
}

/// What an HTTP callback tells the host: go on with the stream, or hold it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// `proxy_continue_stream` and `proxy_close_stream`'s stream: the request.
const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        name: *const u8,
        name_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, name: *const u8, name_size: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, size: usize) -> i32;
}

/// A kept buffer is at most this large (a request's headers take ~1 KiB with a JWT).
const SPARE_BYTES_MAX: usize = 16 * 1024;
/// Buffers kept at most.
const SPARES_KEPT: usize = 4;

/// Buffers of host answers that were read and let go, for the next answers. The host hands
/// back every request's headers, and an allocation and a free for them touched more of the
/// module's code (the allocator's) than anything else a request runs but the decision.
#[derive(Default)]
struct Spares {
    kept: Vec<Vec<u8>>,
    /// The one handed to the host and not yet back (its address and capacity): only then is a
    /// pointer the host passes back read with a capacity other than its length.
    lent: Option<(usize, usize)>,
}

thread_local! {
    // One VM, one thread.
    static SPARES: RefCell<Spares> = RefCell::new(Spares::default());
}

/// Keeps a buffer the filter is done with for a host call to fill (see [`SPARES_KEPT`]).
pub fn recycle(bytes: Vec<u8>) {
    if bytes.capacity() == 0 || bytes.capacity() > SPARE_BYTES_MAX {
        return;
    }
    SPARES.with(|spares| {
        let Ok(mut spares) = spares.try_borrow_mut() else {
            return;
        };
        if spares.kept.len() < SPARES_KEPT {
            spares.kept.push(bytes);
        } else if let Some(smallest) = spares.kept.iter_mut().min_by_key(|b| b.capacity()) {
            // The larger ones serve more answers.
            if smallest.capacity() < bytes.capacity() {
                *smallest = bytes;
            }
        }
    });
}

/// A kept buffer of at least `size` bytes, lent to the host (none while one is out).
fn lend(size: usize) -> Option<*mut u8> {
    SPARES.with(|spares| {
        let mut spares = spares.try_borrow_mut().ok()?;
        if spares.lent.is_some() {
            return None;
        }
        let at = spares.kept.iter().position(|b| b.capacity() >= size)?;
        let mut bytes = ManuallyDrop::new(spares.kept.swap_remove(at));
        let data = bytes.as_mut_ptr();
        spares.lent = Some((data as usize, bytes.capacity()));
        Some(data)
    })
}

/// The capacity of the buffer at `data` if it is the one lent, which is then back.
fn returned(data: *mut u8) -> Option<usize> {
    SPARES.with(|spares| {
        let mut spares = spares.try_borrow_mut().ok()?;
        match spares.lent {
            Some((lent, capacity)) if lent == data as usize => {
                spares.lent = None;
                Some(capacity)
            }
            _ => None,
        }
    })
}

/// Forgets the buffer lent for a call that failed: the host hands nothing back, and keeps it
/// (leaked, as an allocation for a failed call always was).
fn forget_lent() {
    SPARES.with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut() {
            spares.lent = None;
        }
    });
}

/// Where the host puts what a host call hands back: `size` bytes, owned by the module once the
/// call returns (see [`owned`]).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size > 0 {
        if let Some(data) = lend(size) {
            return data;
        }
    }
    let mut bytes = ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    if bytes.capacity() != size {
        // `Vec::from_raw_parts` in `owned` needs the capacity it will free with.
        return null_mut();
    }
    bytes.as_mut_ptr()
}

/// The bytes a host call handed back, as a `Vec` (`None` for no data).
///
/// # Safety
/// `data` is null or came from [`proxy_on_memory_allocate`] with `size` bytes, now ours.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    match returned(data) {
        Some(capacity) if size <= capacity => Some(Vec::from_raw_parts(data, size, capacity)),
        // A host that answered with more than it asked for: leaked rather than misread.
        Some(_) => None,
        None => Some(Vec::from_raw_parts(data, size, size)),
    }
}

/// What a host call that hands data back answered: the bytes (`None` for no data), or its
/// status.
///
/// # Safety
/// As for [`owned`], when the call succeeded.
unsafe fn handed_back(status: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
    match checked(status) {
        Ok(()) => Ok(owned(data, size)),
        Err(status) => {
            forget_lent();
            Err(status)
        }
    }
}

// Each host call below passes the host pointers into memory it owns for the call's duration
// (or that the host fills in), and lengths that match them.

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    checked(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// The host's log level for this plugin, as a number of [`LogLevel`].
pub fn get_log_level() -> Result<u32, Status> {
    let mut level = 0;
    checked(unsafe { proxy_get_log_level(&mut level) }).map(|()| level)
}

/// The host's clock, in nanoseconds since the Unix epoch.
pub fn get_current_time_ns() -> Result<u64, Status> {
    let mut time = 0;
    checked(unsafe { proxy_get_current_time_nanoseconds(&mut time) }).map(|()| time)
}

/// `N` bytes from the host's CSPRNG (WASI's `random_get`; Envoy fills them from its own).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Status> {
    let mut bytes = [0; N];
    match unsafe { random_get(bytes.as_mut_ptr(), N) } {
        0 => Ok(bytes),
        errno => Err(Status(errno.unsigned_abs())),
    }
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    checked(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Up to `max_size` bytes of a buffer from `start` (`None`: the host has none).
pub fn get_buffer(
    buffer: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status =
        unsafe { proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size) };
    match unsafe { handed_back(status, data, size) } {
        Err(Status::NOT_FOUND) => Ok(None),
        answer => answer,
    }
}

/// A header map as the host serializes it: the number of pairs (u32, little endian), the length
/// of each name and value (u32 pairs), then each name and value followed by a NUL.
pub fn get_header_map_pairs(map: HeaderMap) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    Ok(unsafe { handed_back(status, data, size) }?.unwrap_or_default())
}

/// Sets a header (replacing any of that name), or removes it with `None`.
pub fn set_map_value(map: HeaderMap, name: &str, value: Option<&str>) -> Result<(), Status> {
    checked(unsafe {
        match value {
            Some(value) => proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    })
}

/// A property of the current context (`None`: the host has no such property).
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let path = path.join("\0");
    let (mut data, mut size) = (null_mut(), 0);
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match unsafe { handed_back(status, data, size) } {
        Err(Status::NOT_FOUND) => Ok(None),
        answer => answer,
    }
}

/// The value under `key` and its version (`Err(NOT_FOUND)` when there is none).
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let bytes = unsafe { handed_back(status, data, size) }?;
    Ok((bytes, (cas != 0).then_some(cas)))
}

/// Writes `value` under `key`; with `cas`, only if the key's version is still that one.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    checked(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Lets the current request, held by [`Action::Pause`], go on.
pub fn resume_http_request() -> Result<(), Status> {
    checked(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Resets the current request's stream (when even a local answer could not be sent).
pub fn reset_http_request() -> Result<(), Status> {
    checked(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

/// Answers the current request here, with no upstream.
pub fn send_http_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = serialize_pairs(headers);
    checked(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Starts an HTTP call to a cluster; its answer comes to `proxy_on_http_call_response` with
/// the returned token (`lib.rs` hands every answer to the root context).
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = serialize_pairs(headers);
    let trailers = serialize_pairs::<&str, &str>(&[]);
    let body = body.unwrap_or_default();
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0;
    checked(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// Makes `context_id` the one later host calls act on (`Err` when it is gone).
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    checked(unsafe { proxy_set_effective_context(context_id) })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    checked(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })
        .map(|()| id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    checked(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    checked(unsafe { proxy_record_metric(id, value) })
}

/// proxy-wasm's serialization of a header map (see [`get_header_map_pairs`]).
pub fn serialize_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let text: usize = pairs
        .iter()
        .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut bytes = Vec::with_capacity(4 + pairs.len() * 8 + text);
    let len = |s: &[u8]| (s.len() as u32).to_le_bytes();
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&len(name.as_ref()));
        bytes.extend_from_slice(&len(value.as_ref()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_ref());
        bytes.push(0);
        bytes.extend_from_slice(value.as_ref());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a host does to hand data back: asks for memory, fills it, passes the pointer back.
    fn host_hands_back(bytes: &[u8]) -> Option<Vec<u8>> {
        let data = proxy_on_memory_allocate(bytes.len());
        assert!(!data.is_null());
        // SAFETY: `data` holds at least `bytes.len()` bytes, and is ours again after.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
            owned(data, bytes.len())
        }
    }

    #[test]
    fn a_buffer_let_go_of_takes_the_next_answer_that_fits() {
        let first = host_hands_back(&[1; 600]).unwrap();
        let (at, capacity) = (first.as_ptr(), first.capacity());
        assert_eq!(
            capacity, 600,
            "an allocation of exactly what the host asked for"
        );
        recycle(first);
        let second = host_hands_back(&[2; 500]).unwrap();
        assert_eq!(second.as_ptr(), at, "the kept buffer took the answer");
        assert_eq!((second.len(), second.capacity()), (500, 600));
        assert!(second.iter().all(|&b| b == 2));
        // The only kept buffer is in use: the next answer gets memory of its own.
        let third = host_hands_back(&[3; 100]).unwrap();
        assert_ne!(third.as_ptr(), at);
        assert_eq!(third.capacity(), 100);
        recycle(second);
        let larger = host_hands_back(&[4; 700]).unwrap();
        assert_eq!(larger.capacity(), 700, "no kept buffer holds it");
    }

    #[test]
    fn the_larger_buffers_are_kept_and_one_is_lent_at_a_time() {
        for _ in 0..SPARES_KEPT {
            recycle(Vec::with_capacity(64));
        }
        recycle(Vec::with_capacity(SPARE_BYTES_MAX + 1));
        recycle(Vec::with_capacity(1024));
        let capacities = || SPARES.with(|s| s.borrow().kept.iter().map(Vec::capacity).max());
        assert_eq!(
            capacities(),
            Some(1024),
            "a smaller one made room; the huge one was freed"
        );

        let lent = proxy_on_memory_allocate(512);
        let own = proxy_on_memory_allocate(512);
        // SAFETY: both came from `proxy_on_memory_allocate`; the host gives them back.
        unsafe {
            assert_eq!(owned(own, 512).map(|v| v.capacity()), Some(512));
            // A host answering with more than the lent buffer holds: not read.
            assert!(owned(lent, 1025).is_none());
        }
        assert!(SPARES.with(|s| s.borrow().lent.is_none()));
    }

    #[test]
    fn a_call_that_fails_after_the_host_took_a_kept_buffer_does_not_stop_the_reuse() {
        recycle(Vec::with_capacity(256));
        // The host takes the kept buffer, then fails the call: it hands nothing back.
        let lost = proxy_on_memory_allocate(100);
        assert!(!lost.is_null());
        // SAFETY: a failed call hands nothing back; `lost` is not read.
        assert_eq!(unsafe { handed_back(2, lost, 100) }, Err(Status(2)));
        recycle(Vec::with_capacity(256));
        let data = proxy_on_memory_allocate(100);
        // SAFETY: `data` came from `proxy_on_memory_allocate` with at least 100 bytes.
        let bytes = unsafe {
            std::ptr::write_bytes(data, 7, 100);
            handed_back(0, data, 100)
        };
        let bytes = bytes.unwrap().unwrap();
        assert_eq!(bytes.capacity(), 256, "a kept buffer was lent again");
    }
}
