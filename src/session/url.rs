//! Checks on a `StreamUrl` before the session token is sent to it.
//!
//! The token in the first frame of a data channel is a bearer credential for
//! the shell. A `StreamUrl` comes from a CreateSession or StartSession
//! response (or from a command line), so before connecting we make sure it
//! points at the Session Manager message gateway of an AWS partition that
//! matches the region in the host name:
//! `wss://ssmmessages.<region>.amazonaws.com/...` or
//! `wss://ssmmessages.<region>.amazonaws.com.cn/...` for the China regions.
//! Callers that talk to an emulator or a custom endpoint opt out with
//! [`HostPolicy::AllowAny`].

use http::Uri;

use super::SessionError;

/// Which hosts may receive the session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HostPolicy {
    /// Only `wss://ssmmessages.<region>.amazonaws.com[.cn]` in the partition of
    /// the region named in the host.
    #[default]
    AwsOnly,
    /// Any `ws://` or `wss://` host (an emulator, a custom endpoint).
    AllowAny,
}

/// The parts of a checked stream URL the driver needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedUrl {
    /// Host name (for messages; never contains the token).
    pub host: String,
    /// Region named in the host, for AWS hosts.
    pub region: Option<String>,
}

/// The DNS suffix of the partition that owns `region`, or `None` for a
/// partition we do not accept (ISO partitions).
fn partition_suffix(region: &str) -> Option<&'static str> {
    if region.starts_with("cn-") {
        Some("amazonaws.com.cn")
    } else if region.starts_with("us-iso") || region.starts_with("eu-isoe") {
        None
    } else {
        Some("amazonaws.com")
    }
}

/// `wss://ssmmessages.<region>.<partition>`: the message gateway whose
/// stream URLs the service hands out for sessions in `region`; `None` for a
/// region that is not a valid name or whose partition is not supported.
pub(crate) fn aws_gateway(region: &str) -> Option<String> {
    if !looks_like_region(region) {
        return None;
    }
    partition_suffix(region).map(|suffix| format!("wss://ssmmessages.{region}.{suffix}"))
}

/// A syntactically valid region name: lowercase letters, digits and hyphens,
/// at least two hyphen-separated parts, ending in a digit (`us-east-1`).
fn looks_like_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('-').count() >= 3
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().last().is_some_and(|b| b.is_ascii_digit())
        && !s.contains("--")
        && !s.starts_with('-')
}

/// Checks `url` against `policy` (and, for AWS hosts, against
/// `expected_region` when one is given). Never echoes the query string,
/// which is opaque and may be long.
pub(crate) fn check_stream_url(
    url: &str,
    policy: HostPolicy,
    expected_region: Option<&str>,
) -> Result<CheckedUrl, SessionError> {
    let uri: Uri = url.parse().map_err(|_| SessionError::InvalidStreamUrl {
        reason: "not a valid URL".into(),
    })?;
    let scheme = uri.scheme_str().unwrap_or("");
    let Some(authority) = uri.authority() else {
        return Err(SessionError::InvalidStreamUrl {
            reason: "the URL has no host".into(),
        });
    };
    if authority.as_str().contains('@') {
        return Err(SessionError::InvalidStreamUrl {
            reason: "the URL must not contain user information".into(),
        });
    }
    let host = authority.host().to_ascii_lowercase();
    let refuse = |reason: String| SessionError::RefusedHost {
        host: host.clone(),
        reason,
    };
    match policy {
        HostPolicy::AllowAny => {
            if scheme != "ws" && scheme != "wss" {
                return Err(SessionError::InvalidStreamUrl {
                    reason: format!("unsupported scheme {scheme:?} (expected ws or wss)"),
                });
            }
            Ok(CheckedUrl { host, region: None })
        }
        HostPolicy::AwsOnly => {
            if scheme != "wss" {
                return Err(refuse(format!(
                    "the scheme is {scheme:?}, not \"wss\" (use an endpoint override to allow other hosts)"
                )));
            }
            if let Some(port) = authority.port_u16()
                && port != 443
            {
                return Err(refuse(format!("unexpected port {port}")));
            }
            let rest = host
                .strip_prefix("ssmmessages.")
                .or_else(|| host.strip_prefix("ssmmessages-fips."))
                .ok_or_else(|| {
                    refuse("it is not a Session Manager message gateway (ssmmessages.<region>.amazonaws.com)".into())
                })?;
            let (region, suffix) = rest.split_once('.').ok_or_else(|| {
                refuse("it is not a Session Manager message gateway (ssmmessages.<region>.amazonaws.com)".into())
            })?;
            if !looks_like_region(region) {
                return Err(refuse(format!("{region:?} is not a region name")));
            }
            let Some(want) = partition_suffix(region) else {
                return Err(refuse(format!(
                    "the partition of region {region} is not supported"
                )));
            };
            if suffix != want {
                return Err(refuse(format!(
                    "region {region} belongs to the {want} partition, not {suffix}"
                )));
            }
            if let Some(expected) = expected_region
                && !expected.is_empty()
                && expected != region
            {
                return Err(refuse(format!(
                    "the host is in region {region} but the session was created in {expected}"
                )));
            }
            if uri.path().is_empty() || uri.path() == "/" {
                return Err(SessionError::InvalidStreamUrl {
                    reason: "the URL has no data-channel path".into(),
                });
            }
            let region = Some(region.to_string());
            Ok(CheckedUrl { host, region })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const REAL: &str = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/1700000000000000000-0123456789abcdef0?role=publish_subscribe&cell-number=AAEAAd+/x==";

    fn refused(url: &str) -> String {
        match check_stream_url(url, HostPolicy::AwsOnly, None) {
            Err(e @ SessionError::RefusedHost { .. }) => e.to_string(),
            other => panic!("expected a refusal for {url}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_real_stream_urls() {
        let c = check_stream_url(REAL, HostPolicy::AwsOnly, Some("us-east-1")).unwrap();
        assert_eq!(c.host, "ssmmessages.us-east-1.amazonaws.com");
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        let cn = "wss://ssmmessages.cn-north-1.amazonaws.com.cn/v1/data-channel/s?role=publish_subscribe";
        assert!(check_stream_url(cn, HostPolicy::AwsOnly, None).is_ok());
        let gov = "wss://ssmmessages.us-gov-west-1.amazonaws.com:443/v1/data-channel/s";
        assert!(check_stream_url(gov, HostPolicy::AwsOnly, None).is_ok());
    }

    #[test]
    fn refuses_other_hosts_with_a_clear_message() {
        let msg = refused("wss://evil.example.com/v1/data-channel/s");
        assert!(
            msg.starts_with("refusing to send the session token to evil.example.com"),
            "{msg}"
        );
        refused("wss://ssmmessages.us-east-1.amazonaws.com.evil.com/v1/data-channel/s");
        refused("wss://ssmmessages.us-east-1.evil.com/v1/data-channel/s");
        refused("wss://xssmmessages.us-east-1.amazonaws.com/v1/data-channel/s");
        refused("wss://ssm.us-east-1.amazonaws.com/v1/data-channel/s");
        refused("wss://ssmmessages.us-east-1.amazonaws.com:8443/v1/data-channel/s");
    }

    #[test]
    fn refuses_plain_ws_and_loopback_by_default() {
        refused("ws://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s");
        let msg = refused("ws://127.0.0.1:4566/v1/data-channel/s");
        assert!(msg.contains("127.0.0.1"));
    }

    #[test]
    fn refuses_wrong_partition_and_region() {
        let msg = refused("wss://ssmmessages.cn-north-1.amazonaws.com/v1/data-channel/s");
        assert!(msg.contains("amazonaws.com.cn partition"), "{msg}");
        refused("wss://ssmmessages.us-east-1.amazonaws.com.cn/v1/data-channel/s");
        refused("wss://ssmmessages.notaregion.amazonaws.com/v1/data-channel/s");
        let e = check_stream_url(REAL, HostPolicy::AwsOnly, Some("eu-west-1")).unwrap_err();
        assert!(e.to_string().contains("eu-west-1"));
    }

    #[test]
    fn refuses_userinfo_and_garbage() {
        assert!(matches!(
            check_stream_url(
                "wss://user@ssmmessages.us-east-1.amazonaws.com/v1/x",
                HostPolicy::AwsOnly,
                None
            ),
            Err(SessionError::InvalidStreamUrl { .. })
        ));
        assert!(check_stream_url("not a url", HostPolicy::AwsOnly, None).is_err());
        assert!(check_stream_url("", HostPolicy::AllowAny, None).is_err());
        assert!(check_stream_url("http://127.0.0.1/x", HostPolicy::AllowAny, None).is_err());
    }

    #[test]
    fn allow_any_accepts_loopback_ws() {
        let c = check_stream_url(
            "ws://127.0.0.1:4566/v1/data-channel/s?x=1",
            HostPolicy::AllowAny,
            None,
        )
        .unwrap();
        assert_eq!(c.host, "127.0.0.1");
    }
}
