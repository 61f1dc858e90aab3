//! Trust roots for HTTPS, chosen so that start-up does no needless work.
//!
//! - A plain `http://` endpoint (the local emulator, a test server) gets no trust
//!   roots at all: nothing is loaded.
//! - Otherwise the Mozilla root set compiled into the binary is used (as the AWS
//!   CLI does with its bundled roots), plus the PEM certificates of the file named
//!   by `AWS_CA_BUNDLE`, for proxies and private CAs. Nothing is read from the
//!   system certificate store, which costs more than the whole API call does.

/// Configures `builder`'s trust roots for requests to `endpoint`.
pub(crate) fn configure(
    builder: reqwest::ClientBuilder,
    endpoint: &str,
) -> Result<reqwest::ClientBuilder, String> {
    if endpoint
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Ok(builder.tls_certs_only(std::iter::empty()));
    }
    let mut roots = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        // Every entry is a well-formed DER certificate; skip rather than fail.
        if let Ok(cert) = reqwest::Certificate::from_der(der.as_ref()) {
            roots.push(cert);
        }
    }
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read AWS_CA_BUNDLE {}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        let extra = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "AWS_CA_BUNDLE {} holds no usable PEM certificates: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        roots.extend(extra);
    }
    Ok(builder.tls_certs_only(roots))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoints_need_no_roots_and_https_ones_build() {
        crate::client::ensure_crypto_provider();
        let b = configure(reqwest::Client::builder(), "http://127.0.0.1:1").unwrap();
        assert!(b.build().is_ok());
        let b = configure(
            reqwest::Client::builder(),
            "https://cloudshell.us-east-1.amazonaws.com",
        )
        .unwrap();
        assert!(b.build().is_ok());
    }
}
