//! Resolution of region, endpoint and retry settings.
//!
//! Endpoint precedence (first match wins):
//! 1. [`ClientBuilder::endpoint_url`](crate::ClientBuilder::endpoint_url);
//! 2. `AWS_ENDPOINT_URL_CLOUDSHELL`;
//! 3. `AWS_ENDPOINT_URL`;
//! 4. `endpoint_url` of the selected profile (only when the standard chain is loaded);
//! 5. `https://cloudshell.<region>.amazonaws.com` (`.amazonaws.com.cn` for `cn-` regions).
//!
//! Sources 2 to 4 are skipped when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`.
//! Empty values count as unset.

use crate::client::error::ConfigError;

/// Default number of attempts per call (first try included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Where an endpoint may come from, in precedence order.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EndpointSources<'a> {
    pub builder: Option<&'a str>,
    pub env_service: Option<&'a str>,
    pub env_global: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub ignore_configured: bool,
}

impl EndpointSources<'_> {
    /// Whether the profile's `endpoint_url` would be the one used, i.e. no source
    /// before it in the precedence order gives an endpoint (so the shared config
    /// has to be read to know the endpoint).
    pub(crate) fn profile_may_apply(&self) -> bool {
        let given = |v: Option<&str>| v.is_some_and(|v| !v.trim().is_empty());
        !given(self.builder)
            && !self.ignore_configured
            && !given(self.env_service)
            && !given(self.env_global)
    }
}

/// The region of the environment, as aws-config's environment region
/// provider reads it: `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub(crate) fn env_region(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"))
}

/// Whether aws-config's environment credentials provider finds credentials:
/// a non-blank `AWS_ACCESS_KEY_ID`, and a non-blank `AWS_SECRET_ACCESS_KEY`
/// (or `SECRET_ACCESS_KEY`).
pub(crate) fn env_has_credentials(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let given = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    given("AWS_ACCESS_KEY_ID") && (given("AWS_SECRET_ACCESS_KEY") || given("SECRET_ACCESS_KEY"))
}

/// Checks that `region` can be placed in a host name.
pub(crate) fn validate_region(region: &str) -> Result<(), ConfigError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidRegion(region.to_owned()))
    }
}

/// The regional endpoint of the service.
pub(crate) fn default_endpoint(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://cloudshell.{region}.amazonaws.com.cn")
    } else {
        format!("https://cloudshell.{region}.amazonaws.com")
    }
}

/// Picks the endpoint (see the module documentation) and normalizes it (no trailing `/`).
pub(crate) fn resolve_endpoint(
    src: EndpointSources<'_>,
    region: &str,
) -> Result<String, ConfigError> {
    let candidates: [(Option<&str>, &'static str, bool); 4] = [
        (src.builder, "builder", true),
        (
            src.env_service,
            "AWS_ENDPOINT_URL_CLOUDSHELL",
            !src.ignore_configured,
        ),
        (src.env_global, "AWS_ENDPOINT_URL", !src.ignore_configured),
        (src.profile, "profile endpoint_url", !src.ignore_configured),
    ];
    for (value, origin, enabled) in candidates {
        if !enabled {
            continue;
        }
        if let Some(url) = value.map(str::trim).filter(|v| !v.is_empty()) {
            return normalize_endpoint(url, origin);
        }
    }
    Ok(default_endpoint(region))
}

fn normalize_endpoint(url: &str, origin: &'static str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidEndpoint {
        url: url.to_owned(),
        origin,
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("the URL must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("the URL must not contain user information"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Parses a max-attempts value (builder or `AWS_MAX_ATTEMPTS`).
pub(crate) fn parse_max_attempts(name: &'static str, value: &str) -> Result<u32, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidSetting {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| invalid("expected a whole number of at least 1"))?;
    if n == 0 {
        return Err(invalid("must be at least 1"));
    }
    Ok(n)
}

/// Whether an environment flag is set to `true` (case-insensitive).
pub(crate) fn env_flag(env: &dyn Fn(&str) -> Option<String>, name: &str) -> bool {
    env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_precedence() {
        let all = EndpointSources {
            builder: Some("http://builder:1"),
            env_service: Some("http://service:2"),
            env_global: Some("http://global:3"),
            profile: Some("http://profile:4"),
            ignore_configured: false,
        };
        assert_eq!(
            resolve_endpoint(all, "us-east-1").unwrap(),
            "http://builder:1"
        );
        let no_builder = EndpointSources {
            builder: None,
            ..all
        };
        assert_eq!(
            resolve_endpoint(no_builder, "us-east-1").unwrap(),
            "http://service:2"
        );
        let only_global = EndpointSources {
            env_service: Some(""),
            ..no_builder
        };
        let only_global = EndpointSources {
            env_service: None,
            ..only_global
        };
        assert_eq!(
            resolve_endpoint(only_global, "us-east-1").unwrap(),
            "http://global:3"
        );
        let only_profile = EndpointSources {
            env_global: Some("  "),
            ..only_global
        };
        assert_eq!(
            resolve_endpoint(only_profile, "us-east-1").unwrap(),
            "http://profile:4"
        );
        let ignored = EndpointSources {
            ignore_configured: true,
            ..no_builder
        };
        assert_eq!(
            resolve_endpoint(ignored, "eu-west-1").unwrap(),
            "https://cloudshell.eu-west-1.amazonaws.com"
        );
        // The builder is never ignored.
        let ignored = EndpointSources {
            ignore_configured: true,
            ..all
        };
        assert_eq!(
            resolve_endpoint(ignored, "eu-west-1").unwrap(),
            "http://builder:1"
        );
        assert_eq!(
            resolve_endpoint(EndpointSources::default(), "cn-north-1").unwrap(),
            "https://cloudshell.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn profile_endpoint_needed_only_when_nothing_before_it_applies() {
        let none = EndpointSources::default();
        assert!(none.profile_may_apply());
        let blank = EndpointSources {
            builder: Some(" "),
            env_service: Some(""),
            env_global: Some("  "),
            ..none
        };
        assert!(blank.profile_may_apply());
        for given in [
            EndpointSources {
                builder: Some("http://b"),
                ..none
            },
            EndpointSources {
                env_service: Some("http://s"),
                ..none
            },
            EndpointSources {
                env_global: Some("http://g"),
                ..none
            },
            EndpointSources {
                ignore_configured: true,
                ..none
            },
        ] {
            assert!(!given.profile_may_apply(), "{given:?}");
        }
    }

    #[test]
    fn region_and_credentials_from_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(env_region(&env(&[])), None);
        assert_eq!(
            env_region(&env(&[("AWS_DEFAULT_REGION", "eu-west-1")])).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            env_region(&env(&[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "us-east-2")
            ]))
            .as_deref(),
            Some("us-east-2")
        );
        assert!(env_has_credentials(&env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK")
        ])));
        assert!(env_has_credentials(&env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", " "),
            ("SECRET_ACCESS_KEY", "SK")
        ])));
        for incomplete in [
            &[][..],
            &[("AWS_ACCESS_KEY_ID", "AK")][..],
            &[("AWS_SECRET_ACCESS_KEY", "SK")][..],
            &[("AWS_ACCESS_KEY_ID", "  "), ("AWS_SECRET_ACCESS_KEY", "SK")][..],
            &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "")][..],
        ] {
            assert!(!env_has_credentials(&env(incomplete)), "{incomplete:?}");
        }
    }

    #[test]
    fn endpoint_normalization_and_errors() {
        let b = |u| EndpointSources {
            builder: Some(u),
            ..Default::default()
        };
        assert_eq!(
            resolve_endpoint(b("http://127.0.0.1:8080/"), "r").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            resolve_endpoint(b("http://h/prefix/"), "r").unwrap(),
            "http://h/prefix"
        );
        for bad in [
            "ftp://h",
            "not a url",
            "http://h/?q=1",
            "http://u:p@h",
            "http://",
        ] {
            let err = resolve_endpoint(b(bad), "r").unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidEndpoint {
                        origin: "builder",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn region_and_attempts() {
        for ok in ["us-east-1", "cn-north-1", "local"] {
            validate_region(ok).unwrap();
        }
        for bad in ["", "US-EAST-1", "us east", "evil.com/x", "-a", "a-"] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_max_attempts("AWS_MAX_ATTEMPTS", " 5 ").unwrap(), 5);
        assert!(parse_max_attempts("AWS_MAX_ATTEMPTS", "0").is_err());
        assert!(parse_max_attempts("AWS_MAX_ATTEMPTS", "potato").is_err());
        let env = |k: &str| (k == "X").then(|| "TRUE".to_owned());
        assert!(env_flag(&env, "X"));
        assert!(!env_flag(&env, "Y"));
    }
}
