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
    for der in aws_ca_bundle()? {
        let cert = reqwest::Certificate::from_der(der.as_ref())
            .map_err(|e| format!("AWS_CA_BUNDLE: a certificate cannot be used: {e}"))?;
        roots.push(cert);
    }
    Ok(builder.tls_certs_only(roots))
}

/// The certificates of the PEM file named by `AWS_CA_BUNDLE` (none when it is
/// unset or empty). The data channel adds them to the system's roots too, so
/// one setting serves the API calls and the shell, as it does for the AWS CLI.
///
/// The file is read and parsed once per process and path: the API client, the
/// credential chain's client and the data channel each ask for it.
pub(crate) fn aws_ca_bundle() -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use std::sync::{Mutex, PoisonError};
    /// The last path read and what it gave.
    type Read = (
        std::ffi::OsString,
        Result<Vec<CertificateDer<'static>>, String>,
    );
    static LAST: Mutex<Option<Read>> = Mutex::new(None);
    let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((p, read)) = last.as_ref()
        && *p == path
    {
        return read.clone();
    }
    let read = read_bundle(&path);
    *last = Some((path, read.clone()));
    read
}

fn read_bundle(
    path: &std::ffi::OsStr,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let shown = std::path::Path::new(&path).display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read AWS_CA_BUNDLE {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("AWS_CA_BUNDLE {shown} is not a PEM bundle: {e}"))?;
    if certs.is_empty() {
        return Err(format!("AWS_CA_BUNDLE {shown} holds no PEM certificates"));
    }
    Ok(certs)
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
