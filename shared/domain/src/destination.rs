//! Where deliveries may go: customers' URLs must not reach our own network. This is the
//! rule; the outbound HTTP adapter applies it to every address a host resolves to.
//!
//! The rule is two tables of ranges that are never public (`BLOCKED_V4`, `BLOCKED_V6`),
//! each range with the RFC that sets it aside, plus the IPv6 forms that carry an IPv4
//! address, which are judged by the IPv4 table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Which destinations deliveries may reach: public addresses, plus ranges an operator
/// exempts (e.g. `127.0.0.0/8` for a local receiver). A sandbox can refuse public
/// addresses too, so that only the exempt ranges are reachable.
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    pub allowed: Vec<IpNet>,
    pub public: bool,
}

impl Default for DestinationPolicy {
    fn default() -> Self {
        DestinationPolicy {
            allowed: Vec::new(),
            public: true,
        }
    }
}

impl DestinationPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.decide(ip).allowed
    }

    /// Whether deliveries may reach `ip`, and why, in words a customer can act on.
    pub fn decide(&self, ip: IpAddr) -> Decision {
        if let Some(net) = self.allowed.iter().find(|net| net.contains(&ip)) {
            return Decision {
                allowed: true,
                reason: format!("in {net}, which this deployment allows"),
            };
        }
        match blocked_range(ip) {
            Some((net, why)) => Decision {
                allowed: false,
                reason: format!("in {net}: {why}"),
            },
            None if self.public => Decision {
                allowed: true,
                reason: "a public address".into(),
            },
            None => Decision {
                allowed: false,
                reason: "a public address, and this deployment reaches only its allowed ranges"
                    .into(),
            },
        }
    }
}

/// The address guard's verdict on one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len)
}

const fn v6(segments: [u16; 8], prefix_len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix_len)
}

/// IPv4 ranges deliveries never reach: private, shared, loopback, link-local, reserved,
/// documentation, benchmarking, multicast and broadcast (RFC 6890's special-purpose
/// registry, minus the few entries that are globally reachable).
const BLOCKED_V4: &[(Ipv4Net, &str)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "\"this network\"; 0.0.0.0 reaches the local host on Linux (RFC 791, RFC 1122 §3.2.1.3)",
    ),
    (v4(10, 0, 0, 0, 8), "private use (RFC 1918)"),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space, carrier-grade NAT (RFC 6598)",
    ),
    (v4(127, 0, 0, 0, 8), "loopback (RFC 1122 §3.2.1.3)"),
    (
        v4(169, 254, 0, 0, 16),
        "link-local, home of cloud metadata services at 169.254.169.254 (RFC 3927)",
    ),
    (v4(172, 16, 0, 0, 12), "private use (RFC 1918)"),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments, incl. DS-Lite 192.0.0.0/29 (RFC 6890, RFC 6333)",
    ),
    (v4(192, 0, 2, 0, 24), "documentation, TEST-NET-1 (RFC 5737)"),
    (
        v4(192, 88, 99, 0, 24),
        "6to4 relay anycast, deprecated (RFC 3068, RFC 7526)",
    ),
    (v4(192, 168, 0, 0, 16), "private use (RFC 1918)"),
    (v4(198, 18, 0, 0, 15), "network benchmarking (RFC 2544)"),
    (
        v4(198, 51, 100, 0, 24),
        "documentation, TEST-NET-2 (RFC 5737)",
    ),
    (
        v4(203, 0, 113, 0, 24),
        "documentation, TEST-NET-3 (RFC 5737)",
    ),
    (v4(224, 0, 0, 0, 4), "multicast (RFC 5771)"),
    (
        v4(240, 0, 0, 0, 4),
        "reserved, incl. limited broadcast 255.255.255.255 (RFC 1112 §4, RFC 919)",
    ),
];

/// IPv6 ranges deliveries never reach. The forms that embed an IPv4 address (see
/// `embedded_v4`) are not listed: they are judged by `BLOCKED_V4`.
const BLOCKED_V6: &[(Ipv6Net, &str)] = &[
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "unspecified (RFC 4291 §2.5.2)",
    ),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback (RFC 4291 §2.5.3)",
    ),
    (
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        "IPv4-translated addresses (RFC 2765 §2.1)",
    ),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use IPv4/IPv6 translation, i.e. an operator's own NAT64 (RFC 8215)",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (RFC 6666)",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments, incl. Teredo 2001::/32 (RFC 2928, RFC 4380)",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (RFC 3849)",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (RFC 9637)",
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing (SRv6) SIDs (RFC 9602)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (RFC 4193)",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local unicast (RFC 4291 §2.5.6)",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local unicast, deprecated (RFC 3879)",
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast (RFC 4291 §2.7)",
    ),
];

/// ::ffff:a.b.c.d, IPv4-mapped (RFC 4291 §2.5.5.2): the IPv4 address in the last 32 bits.
const IPV4_MAPPED: Ipv6Net = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
/// ::a.b.c.d, IPv4-compatible, deprecated (RFC 4291 §2.5.5.1): in the last 32 bits.
const IPV4_COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);
/// 64:ff9b::a.b.c.d, the well-known NAT64 prefix (RFC 6052 §2.1): in the last 32 bits.
const NAT64_WELL_KNOWN: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// 2002:AABB:CCDD::/48, 6to4 (RFC 3056 §2): the IPv4 address in bits 16..48.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The blocked range `ip` is in, with what it is for.
fn blocked_v4(ip: Ipv4Addr) -> Option<(IpNet, &'static str)> {
    BLOCKED_V4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(net, why)| (IpNet::V4(*net), *why))
}

/// The IPv4 address an IPv6 address stands for, where it stands for one: such an address
/// reaches (or is translated to) that IPv4 host, so it is only as public as that host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if IPV4_MAPPED.contains(&ip) || IPV4_COMPATIBLE.contains(&ip) || NAT64_WELL_KNOWN.contains(&ip)
    {
        Some(Ipv4Addr::from(bits as u32))
    } else if SIX_TO_FOUR.contains(&ip) {
        Some(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}

fn blocked_v6(ip: Ipv6Addr) -> Option<(IpNet, &'static str)> {
    if let Some((net, why)) = BLOCKED_V6.iter().find(|(net, _)| net.contains(&ip)) {
        return Some((IpNet::V6(*net), why));
    }
    embedded_v4(ip).and_then(blocked_v4)
}

/// The blocked range `ip` is in (judged through the IPv4 address an IPv6 form carries),
/// with what that range is for; `None` for a public address.
pub fn blocked_range(ip: IpAddr) -> Option<(IpNet, &'static str)> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

pub fn is_public(ip: IpAddr) -> bool {
    blocked_range(ip).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_ranges_are_refused() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
        ] {
            assert!(!is_public(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass_and_allow_list_exempts() {
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s} should pass");
        }
        let mut policy = DestinationPolicy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            public: true,
        };
        assert!(policy.allows(ip("127.0.0.1")));
        assert!(!policy.allows(ip("10.0.0.1")));
        assert!(policy.allows(ip("8.8.8.8")));
        policy.public = false;
        assert!(!policy.allows(ip("8.8.8.8")));
        assert!(policy.allows(ip("127.0.0.2")));
    }

    /// Every blocked range, written out independently of the tables above, with the
    /// addresses just before and just after it where those are public (`None` where the
    /// neighbour is itself blocked, or the range ends the address space).
    const V4_CASES: &[(&str, Option<&str>, Option<&str>)] = &[
        ("0.0.0.0/8", None, Some("1.0.0.0")),
        ("10.0.0.0/8", Some("9.255.255.255"), Some("11.0.0.0")),
        ("100.64.0.0/10", Some("100.63.255.255"), Some("100.128.0.0")),
        ("127.0.0.0/8", Some("126.255.255.255"), Some("128.0.0.0")),
        (
            "169.254.0.0/16",
            Some("169.253.255.255"),
            Some("169.255.0.0"),
        ),
        ("172.16.0.0/12", Some("172.15.255.255"), Some("172.32.0.0")),
        ("192.0.0.0/24", Some("191.255.255.255"), Some("192.0.1.0")),
        ("192.0.2.0/24", Some("192.0.1.255"), Some("192.0.3.0")),
        (
            "192.88.99.0/24",
            Some("192.88.98.255"),
            Some("192.88.100.0"),
        ),
        (
            "192.168.0.0/16",
            Some("192.167.255.255"),
            Some("192.169.0.0"),
        ),
        ("198.18.0.0/15", Some("198.17.255.255"), Some("198.20.0.0")),
        (
            "198.51.100.0/24",
            Some("198.51.99.255"),
            Some("198.51.101.0"),
        ),
        ("203.0.113.0/24", Some("203.0.112.255"), Some("203.0.114.0")),
        ("224.0.0.0/4", Some("223.255.255.255"), None),
        ("240.0.0.0/4", None, None),
    ];

    const V6_CASES: &[(&str, Option<&str>, Option<&str>)] = &[
        ("::/128", None, None),
        ("::1/128", None, None),
        (
            "::ffff:0:0:0/96",
            Some("::fffe:ffff:ffff:ffff"),
            Some("::ffff:1:0:0"),
        ),
        (
            "64:ff9b:1::/48",
            Some("64:ff9b:0:ffff:ffff:ffff:ffff:ffff"),
            Some("64:ff9b:2::"),
        ),
        (
            "100::/64",
            Some("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("100:0:0:1::"),
        ),
        (
            "2001::/23",
            Some("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:200::"),
        ),
        (
            "2001:db8::/32",
            Some("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:db9::"),
        ),
        (
            "3fff::/20",
            Some("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("3fff:1000::"),
        ),
        (
            "5f00::/16",
            Some("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("5f01::"),
        ),
        (
            "fc00::/7",
            Some("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("fe00::"),
        ),
        (
            "fe80::/10",
            Some("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            None,
        ),
        ("fec0::/10", None, None),
        ("ff00::/8", None, None),
    ];

    /// Checks one range: its first and last addresses are refused, and each given
    /// neighbour is exactly one address outside it and passes.
    fn check_range(net: IpNet, before: Option<&str>, after: Option<&str>) {
        let (first, last) = (net.network(), net.broadcast());
        assert!(
            !is_public(first),
            "{first}, first of {net}, should be refused"
        );
        assert!(!is_public(last), "{last}, last of {net}, should be refused");
        let as_u128 = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        if let Some(before) = before {
            let before = ip(before);
            assert_eq!(
                as_u128(before) + 1,
                as_u128(first),
                "{before} is not just before {net}"
            );
            assert!(
                is_public(before),
                "{before}, just before {net}, should pass"
            );
        }
        if let Some(after) = after {
            let after = ip(after);
            assert_eq!(
                as_u128(last) + 1,
                as_u128(after),
                "{after} is not just after {net}"
            );
            assert!(is_public(after), "{after}, just after {net}, should pass");
        }
    }

    #[test]
    fn every_blocked_range_is_refused_from_first_to_last_address_and_no_further() {
        for (net, before, after) in V4_CASES.iter().chain(V6_CASES) {
            check_range(net.parse().unwrap(), *before, *after);
        }
    }

    #[test]
    fn the_cases_cover_exactly_the_blocked_tables() {
        let listed_v4: Vec<Ipv4Net> = V4_CASES.iter().map(|c| c.0.parse().unwrap()).collect();
        let listed_v6: Vec<Ipv6Net> = V6_CASES.iter().map(|c| c.0.parse().unwrap()).collect();
        let v4: Vec<Ipv4Net> = BLOCKED_V4.iter().map(|(net, _)| *net).collect();
        let v6: Vec<Ipv6Net> = BLOCKED_V6.iter().map(|(net, _)| *net).collect();
        assert_eq!(v4, listed_v4);
        assert_eq!(v6, listed_v6);
        // Each range is written in canonical form (no host bits set) and says what it is.
        for (net, why) in BLOCKED_V4 {
            assert_eq!(*net, net.trunc(), "{net} has host bits set");
            assert!(why.contains("RFC"), "{net}: {why}");
        }
        for (net, why) in BLOCKED_V6 {
            assert_eq!(*net, net.trunc(), "{net} has host bits set");
            assert!(why.contains("RFC"), "{net}: {why}");
        }
    }

    #[test]
    fn a_decision_says_why() {
        let open = DestinationPolicy::default();
        let d = open.decide(ip("169.254.169.254"));
        assert!(!d.allowed);
        assert!(
            d.reason.contains("169.254.0.0/16") && d.reason.contains("metadata"),
            "{}",
            d.reason
        );
        assert!(open
            .decide(ip("::ffff:10.1.2.3"))
            .reason
            .contains("10.0.0.0/8"));
        assert_eq!(open.decide(ip("8.8.8.8")).reason, "a public address");
        let local = DestinationPolicy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            public: false,
        };
        assert!(local.decide(ip("127.0.0.1")).allowed);
        assert!(local.decide(ip("127.0.0.1")).reason.contains("127.0.0.0/8"));
        let public = local.decide(ip("8.8.8.8"));
        assert!(!public.allowed && public.reason.contains("only its allowed ranges"));
    }

    #[test]
    fn ipv6_forms_of_an_ipv4_address_are_judged_as_that_address() {
        type Embed = fn(Ipv4Addr) -> Ipv6Addr;
        let forms: [(&str, Embed); 4] = [
            ("IPv4-mapped", |v4| v4.to_ipv6_mapped()),
            ("IPv4-compatible", |v4| v4.to_ipv6_compatible()),
            ("NAT64", |v4| {
                Ipv6Addr::from(u128::from(NAT64_WELL_KNOWN.network()) | u128::from(u32::from(v4)))
            }),
            ("6to4", |v4| {
                let [a, b, c, d] = v4.octets();
                Ipv6Addr::new(
                    0x2002,
                    u16::from_be_bytes([a, b]),
                    u16::from_be_bytes([c, d]),
                    0,
                    0,
                    0,
                    0,
                    1,
                )
            }),
        ];
        for (name, embed) in forms {
            for (net, _, _) in V4_CASES {
                let net: Ipv4Net = net.parse().unwrap();
                for v4 in [net.network(), net.broadcast()] {
                    let v6 = embed(v4);
                    assert!(
                        !is_public(v6.into()),
                        "{name} {v6} ({v4}) should be refused"
                    );
                }
            }
            for s in ["8.8.8.8", "1.1.1.1", "93.184.216.34"] {
                let v6 = embed(s.parse().unwrap());
                assert!(is_public(v6.into()), "{name} {v6} ({s}) should pass");
            }
        }
    }

    #[test]
    fn well_known_public_addresses_pass() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "9.9.9.9",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
        ] {
            assert!(is_public(ip(s)), "{s} should pass");
        }
    }

    #[test]
    fn newly_refused_ipv6_ranges_are_refused() {
        for s in [
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::808:808",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            "5f00:ffff::1",
            "2001:db8:ffff::1",
        ] {
            assert!(!is_public(ip(s)), "{s} should be refused");
        }
    }
}
