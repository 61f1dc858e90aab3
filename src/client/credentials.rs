//! A small cache in front of the credentials provider.
//!
//! aws-config's default chain does not cache by itself (the AWS SDK clients do it
//! in their identity cache), so this client keeps the last credentials until five
//! minutes before they expire, or for 15 minutes when they carry no expiry.
//! Concurrent callers share one refresh.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError,
};
use tokio::sync::Mutex;

const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
const NO_EXPIRY_LIFETIME: Duration = Duration::from_secs(900);

pub(crate) struct CredentialsCache {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Credentials, Instant)>>,
}

impl std::fmt::Debug for CredentialsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialsCache")
    }
}

impl CredentialsCache {
    pub(crate) fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            provider,
            cached: Mutex::new(None),
        }
    }

    pub(crate) async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut guard = self.cached.lock().await;
        if let Some((creds, refresh_at)) = guard.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(creds.clone());
        }
        let creds = self.provider.provide_credentials().await?;
        let lifetime = match creds.expiry() {
            Some(expiry) => expiry
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(REFRESH_BEFORE_EXPIRY),
            None => NO_EXPIRY_LIFETIME,
        };
        *guard = Some((creds.clone(), Instant::now() + lifetime));
        Ok(creds)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        expiry: Option<SystemTime>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                "AK",
                "SK",
                None,
                self.expiry,
                "counting",
            )))
        }
    }

    #[tokio::test]
    async fn caches_until_close_to_expiry() {
        let calls = Arc::new(AtomicU32::new(0));
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            expiry: None,
        }));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Expiring within the refresh window: fetched every time.
        let calls = Arc::new(AtomicU32::new(0));
        let soon = SystemTime::now() + Duration::from_secs(60);
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            expiry: Some(soon),
        }));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
