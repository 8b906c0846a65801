//! What the CLI knows beyond the request: each provider's keys (inline, from `--jwks` files, or
//! fetched over HTTP with `--fetch`). Introspection endpoints are never called.

use std::cell::OnceCell;
use tollgate::config::{Config, KeySource, ProviderId};
use tollgate::explain::ExplainHost;
use tollgate::gate::{Host, KeysView};
use tollgate::jwk::{JwkSet, JwksLimits, KeyOrigin};

/// Where one provider's keys come from.
enum Keys {
    /// `inline_jwks` of the configuration.
    Inline,
    /// A `--jwks` file.
    Given { set: JwkSet, origin: String },
    /// Fetched on first use (`--fetch`); the error says why not.
    #[cfg_attr(
        not(all(feature = "fetch", not(target_family = "wasm"))),
        allow(dead_code)
    )]
    Fetch(OnceCell<Result<(JwkSet, String), String>>),
    /// A remote provider with neither `--jwks` nor `--fetch`: the filter would wait.
    Missing,
    /// A provider that verifies by introspection only.
    None,
}

pub struct CliHost<'c> {
    config: &'c Config,
    keys: Vec<Keys>,
    #[cfg_attr(
        not(all(feature = "fetch", not(target_family = "wasm"))),
        allow(dead_code)
    )]
    now_ms: u64,
}

/// A `--jwks` file that cannot be used, or a `--jwks NAME=` naming no remote provider.
#[derive(Debug)]
pub enum KeysError {
    Usage(String),
    Input(String),
}

impl<'c> CliHost<'c> {
    /// `jwks`: (provider name or every remote provider, file name, file bytes).
    pub fn new(
        config: &'c Config,
        jwks: &[(Option<String>, String, Vec<u8>)],
        fetch: bool,
        now: u64,
    ) -> Result<CliHost<'c>, KeysError> {
        for (name, _, _) in jwks {
            if let Some(name) = name {
                match config.providers.iter().find(|p| &p.name == name) {
                    None => {
                        return Err(KeysError::Usage(format!(
                            "--jwks {name}=...: the configuration has no provider {name:?}"
                        )))
                    }
                    Some(p) if !matches!(p.keys, Some(KeySource::Remote(_))) => {
                        return Err(KeysError::Usage(format!(
                            "--jwks {name}=...: provider {name} takes its keys from the \
                             configuration, not from a JWKS"
                        )))
                    }
                    Some(_) => {}
                }
            }
        }
        let mut keys = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            keys.push(match &p.keys {
                Some(KeySource::Inline(_)) => Keys::Inline,
                None => Keys::None,
                Some(KeySource::Remote(_)) => {
                    // A file for this provider by name wins over one for every provider.
                    let given = jwks
                        .iter()
                        .rev()
                        .find(|(n, _, _)| n.as_deref() == Some(p.name.as_str()))
                        .or_else(|| jwks.iter().rev().find(|(n, _, _)| n.is_none()));
                    match given {
                        Some((_, file, bytes)) => {
                            let set =
                                JwkSet::parse(bytes, KeyOrigin::Remote, &JwksLimits::default())
                                    .map_err(|e| KeysError::Input(format!("--jwks {file}: {e}")))?;
                            let skipped = set.skipped().len();
                            let origin = if skipped == 0 {
                                format!("from {file}")
                            } else {
                                format!("from {file}; {skipped} entries skipped")
                            };
                            Keys::Given { set, origin }
                        }
                        None if fetch => Keys::Fetch(OnceCell::new()),
                        None => Keys::Missing,
                    }
                }
            });
        }
        Ok(CliHost {
            config,
            keys,
            now_ms: now.saturating_mul(1000),
        })
    }

    #[cfg(all(feature = "fetch", not(target_family = "wasm")))]
    fn fetched<'s>(
        &'s self,
        id: ProviderId,
        cell: &'s OnceCell<Result<(JwkSet, String), String>>,
    ) -> Option<&'s JwkSet> {
        let result = cell.get_or_init(|| {
            let provider = self.config.provider(id).ok_or("no such provider")?;
            match &provider.keys {
                Some(KeySource::Remote(remote)) => {
                    crate::fetch::keys(&provider.issuer, remote, self.now_ms)
                }
                _ => Err("the provider has no remote keys".to_string()),
            }
        });
        result.as_ref().ok().map(|(set, _)| set)
    }

    #[cfg(not(all(feature = "fetch", not(target_family = "wasm"))))]
    fn fetched<'s>(
        &'s self,
        _: ProviderId,
        _: &'s OnceCell<Result<(JwkSet, String), String>>,
    ) -> Option<&'s JwkSet> {
        None
    }
}

impl Host for CliHost<'_> {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        match self.keys.get(provider) {
            Some(Keys::Inline) => {
                match self.config.provider(provider).and_then(|p| p.keys.as_ref()) {
                    Some(KeySource::Inline(set)) => KeysView::Ready(set),
                    _ => KeysView::Unavailable,
                }
            }
            Some(Keys::Given { set, .. }) => KeysView::Ready(set),
            Some(Keys::Fetch(cell)) => match self.fetched(provider, cell) {
                Some(set) => KeysView::Ready(set),
                None => KeysView::Unavailable,
            },
            Some(Keys::Missing) => KeysView::Pending,
            Some(Keys::None) | None => KeysView::Unavailable,
        }
    }

    /// The keys are as fresh as they get: a refetch would bring the same ones.
    fn may_refetch(&self, _provider: ProviderId) -> bool {
        false
    }
}

impl ExplainHost for CliHost<'_> {
    fn keys_origin(&self, provider: ProviderId) -> Option<String> {
        Some(match self.keys.get(provider)? {
            Keys::Inline => "inline_jwks".to_string(),
            Keys::Given { origin, .. } => origin.clone(),
            Keys::Fetch(cell) => match cell.get() {
                Some(Ok((_, origin))) => origin.clone(),
                Some(Err(e)) => format!("fetching failed: {e}"),
                None => "not fetched".to_string(),
            },
            Keys::Missing => "none given: pass --jwks FILE or --fetch".to_string(),
            Keys::None => "it verifies by introspection only".to_string(),
        })
    }
}
