//! What a diagnosis of an endpoint found, phase by phase along the path a delivery takes:
//! name resolution, the address guard, the TCP connection, TLS, and the HTTP answer. A
//! phase after the first failure is absent: it did not run.

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnosis {
    pub url: String,
    /// The endpoint answered 2xx.
    pub ok: bool,
    /// The first phase that failed: `url`, `dns`, `address_guard`, `connect`, `tls` or
    /// `http`; null when every phase passed.
    pub failed_phase: Option<String>,
    pub dns: Option<DnsPhase>,
    /// The guard's verdict on each address, in the order resolved. A refused address is
    /// neither shown nor connected to: a diagnosis says nothing of what a delivery may not
    /// reach.
    pub address_guard: Vec<AddressVerdict>,
    pub connect: Option<ConnectPhase>,
    /// Only for `https` URLs.
    pub tls: Option<TlsPhase>,
    pub http: Option<HttpPhase>,
    /// The addresses deliveries leave from, when the operator configured them (for the
    /// receiver's allow-list).
    pub egress_ips: Vec<String>,
    /// What to check first, in words, when a phase failed.
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsPhase {
    pub duration_ms: u64,
    /// The addresses deliveries may reach.
    pub addresses: Vec<String>,
    /// How many other addresses the name resolved to (refused, not shown).
    pub refused: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressVerdict {
    pub address: String,
    pub allowed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectPhase {
    /// The address connected to (`ip:port`).
    pub address: String,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsPhase {
    pub duration_ms: u64,
    /// `TLSv1_3`, `TLSv1_2`; null when the handshake failed.
    pub protocol: Option<String>,
    /// The certificate the server presented, also when it was not trusted.
    pub certificate: Option<CertificateInfo>,
    /// Why the handshake failed: an untrusted issuer, an expired certificate, a name that
    /// does not match, a protocol error.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// The names it is valid for (subject alternative names).
    pub dns_names: Vec<String>,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpPhase {
    pub status_code: Option<u16>,
    /// From the request's first byte sent to the response's first byte received.
    pub time_to_first_byte_ms: Option<u64>,
    pub error: Option<String>,
}

impl Diagnosis {
    /// Marks `phase` as the one that failed, with a hint for the customer.
    pub fn fail(&mut self, phase: &str, hint: impl Into<String>) {
        self.ok = false;
        self.failed_phase = Some(phase.to_string());
        self.hint = Some(hint.into());
    }
}
