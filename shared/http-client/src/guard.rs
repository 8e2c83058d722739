//! The SSRF guard on the wire: every address a host resolves to is checked against the
//! destination policy, and the connection goes to a checked address (this resolver hands
//! reqwest only those), so DNS rebinding cannot slip a private address in between.

use std::net::SocketAddr;
use std::sync::Arc;

use domain::destination::DestinationPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The refusal the resolver returns; found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses that webhooks may not reach")]
pub struct RefusedDestination {
    pub host: String,
}

/// The resolver's failure: the host has no address (or the lookup itself failed). Its own
/// type, so error analysis can tell DNS apart from a failed connection.
#[derive(Debug, thiserror::Error)]
#[error("{host} does not resolve: {source}")]
pub struct UnresolvedHost {
    pub host: String,
    pub source: std::io::Error,
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
pub struct GuardedResolver {
    pub policy: Arc<DestinationPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let lookup = tokio::net::lookup_host((host.as_str(), 0)).await;
            let resolved = match lookup {
                Ok(resolved) => resolved,
                Err(source) => {
                    let host = host.clone();
                    return Err(Box::new(UnresolvedHost { host, source }) as _);
                }
            };
            let allowed: Vec<SocketAddr> = resolved.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(RefusedDestination { host: host.clone() }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}
