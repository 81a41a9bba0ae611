//! The origin check both transports run before anything else (PROTOCOL.md §1.4): Phoenix's
//! `check_origin` list form, against cross-site WebSocket hijacking and its long-poll twin.
//!
//! Each allowed origin is written as Phoenix writes it: `//example.com` (that host, any scheme
//! and port), `https://example.com` (that scheme and host, and the scheme's default port),
//! `//example.com:81` (host and port), `https://*.example.com` (the host itself or any name
//! ending in `.example.com`). A request without an `Origin` header (not a browser) is allowed;
//! an origin without a host (`null`, `file://`) is refused.

/// Origins a browser page may connect from. Built from `FAWKES_CHECK_ORIGIN`; without it
/// every origin is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    allowed: Vec<Allowed>,
}

/// One allowed origin; a part left out matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

/// An origin as the check reads it: scheme, host and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

/// A scheme's default port, as URI parsing fills it in.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Reads `scheme://host[:port][/path]` or `//host[:port]`; `None` without a host.
fn parse_uri(text: &str) -> Option<Parsed> {
    let (scheme, rest) = match text.split_once("//") {
        Some(("", rest)) => (None, rest),
        Some((scheme, rest)) => {
            let scheme = scheme.strip_suffix(':')?;
            let valid = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                return None;
            }
            (Some(scheme.to_ascii_lowercase()), rest)
        }
        None => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (address, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            port => Some(port.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (address, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = port.or_else(|| scheme.as_deref().and_then(default_port));
    Some(Parsed {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl AllowedOrigins {
    /// Reads a comma-separated list; `Err` names each entry that is not an origin.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        let mut bad = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match parse_uri(entry) {
                Some(Parsed { scheme, host, port }) => allowed.push(Allowed { scheme, host, port }),
                None => bad.push(format!("`{entry}`")),
            }
        }
        if !bad.is_empty() {
            return Err(format!(
                "FAWKES_CHECK_ORIGIN: {} not an origin such as //example.com or https://example.com",
                bad.join(", ")
            ));
        }
        if allowed.is_empty() {
            return Err("FAWKES_CHECK_ORIGIN is set but lists no origin".to_owned());
        }
        Ok(Self { allowed })
    }

    /// Whether a request with this `Origin` header may connect.
    pub(crate) fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Some(origin) = parse_uri(origin.trim()) else {
            return false;
        };
        self.allowed.iter().any(|allowed| {
            allowed
                .scheme
                .as_deref()
                .is_none_or(|s| origin.scheme.as_deref() == Some(s))
                && allowed.port.is_none_or(|p| origin.port == Some(p))
                && host_matches(&origin.host, &allowed.host)
        })
    }
}

/// `*.example.com` matches `example.com` and any name ending in `.example.com`.
fn host_matches(host: &str, allowed: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(domain) => {
            host == domain
                || host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.'))
        }
        None => host == allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, origin: &str) -> bool {
        AllowedOrigins::parse(list)
            .expect("valid")
            .allows(Some(origin))
    }

    /// PROTOCOL-CONFORMANCE.md A.6 (Phoenix's `check_origin/4` tests).
    #[test]
    fn phoenix_list_rules() {
        let list = "//example.com, http://scheme.com, //port.com:81";
        assert!(allows(list, "http://example.com/"));
        assert!(allows(list, "https://example.com/"));
        assert!(allows(list, "http://scheme.com/"));
        assert!(!allows(list, "https://scheme.com/"));
        assert!(!allows(list, "http://scheme.com:8080/"));
        assert!(allows(list, "http://scheme.com:80"));
        assert!(allows(list, "http://port.com:81/"));
        assert!(!allows(list, "http://port.com:82/"));
        assert!(!allows(list, "http://notallowed.com"));
        let wild = "https://*.ex.com";
        assert!(allows(wild, "https://org1.ex.com"));
        assert!(allows(wild, "https://ex.com"));
        assert!(!allows(wild, "https://org1.prefix-ex.com"));
        assert!(!allows("//ex.com", "https://org1.ex.com"));
        for hostless in ["null", "file://", ""] {
            assert!(!allows(list, hostless), "{hostless:?}");
        }
    }

    #[test]
    fn no_origin_header_is_allowed_and_bad_lists_are_refused() {
        let policy = AllowedOrigins::parse("//example.com").expect("valid");
        assert!(policy.allows(None));
        assert!(AllowedOrigins::parse("example.com").is_err());
        assert!(AllowedOrigins::parse(" , ").is_err());
        let error = AllowedOrigins::parse("//ok.com, nope, http://:80").expect_err("bad");
        assert!(
            error.contains("`nope`") && error.contains("`http://:80`"),
            "{error}"
        );
    }

    #[test]
    fn arbitrary_origins_never_panic() {
        let policy = AllowedOrigins::parse("//a.com, https://*.b.com:8443").expect("valid");
        for origin in [
            "://",
            "http://[::1]:80",
            "http://a.com:99999",
            "h://@",
            "http://a.com@b.com",
            "\u{0}//",
        ] {
            let _ = policy.allows(Some(origin));
        }
        assert!(policy.allows(Some("http://user@a.com")));
        assert!(policy.allows(Some("https://x.b.com:8443")));
        assert!(!policy.allows(Some("https://x.b.com")));
    }
}
