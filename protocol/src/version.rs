//! Agent versions. An agent reports its version in its handshake request
//! (`AgentVersion`); some behaviours of the data channel depend on it, and
//! both roles decide them the same way, with [`agent_version_after`].

/// The last agent version that ignores the `TerminateSession` flag (the
/// plugin's `TerminateSessionFlagSupportedAfterThisAgentVersion`): a client
/// ends a session with such an agent through the `ssm:TerminateSession` API.
pub const TERMINATE_FLAG_AFTER: &str = "2.3.722.0";

/// The last agent version whose port sessions do not multiplex (the plugin's
/// `MuxSupportedAfterThisAgentVersion`): one connection at a time.
pub const MULTIPLEX_AFTER: &str = "3.0.196.0";

/// Whether agent version `version` is strictly after `than`, both compared
/// as dot-separated numbers part by part, a missing part counting as 0 (as
/// the plugin's version library does). `None` when either does not parse.
///
/// ```
/// use ssm_channel::version::{agent_version_after, MULTIPLEX_AFTER};
/// assert_eq!(agent_version_after("3.0.222.0", MULTIPLEX_AFTER), Some(true));
/// assert_eq!(agent_version_after("3.0.196.0", MULTIPLEX_AFTER), Some(false));
/// assert_eq!(agent_version_after("3.1", MULTIPLEX_AFTER), Some(true));
/// assert_eq!(agent_version_after("latest", MULTIPLEX_AFTER), None);
/// ```
pub fn agent_version_after(version: &str, than: &str) -> Option<bool> {
    let parse = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let (a, b) = (parse(version)?, parse(than)?);
    let part = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    let first_difference = (0..a.len().max(b.len()))
        .map(|i| (part(&a, i), part(&b, i)))
        .find(|(x, y)| x != y);
    Some(first_difference.is_some_and(|(x, y)| x > y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_part_by_part_as_numbers() {
        assert_eq!(
            agent_version_after("3.0.196.1", MULTIPLEX_AFTER),
            Some(true)
        );
        assert_eq!(
            agent_version_after("3.0.1000.0", MULTIPLEX_AFTER),
            Some(true)
        );
        assert_eq!(agent_version_after("10.0.0.0", MULTIPLEX_AFTER), Some(true));
        assert_eq!(
            agent_version_after("3.0.196.0", MULTIPLEX_AFTER),
            Some(false)
        );
        assert_eq!(
            agent_version_after("3.0.99.9", MULTIPLEX_AFTER),
            Some(false)
        );
        assert_eq!(
            agent_version_after("2.3.722.0", TERMINATE_FLAG_AFTER),
            Some(false)
        );
        assert_eq!(
            agent_version_after("2.3.723.0", TERMINATE_FLAG_AFTER),
            Some(true)
        );
        assert_eq!(
            agent_version_after("2.3.68.0", TERMINATE_FLAG_AFTER),
            Some(false)
        );
        // Missing parts count as 0.
        assert_eq!(agent_version_after("3.1", MULTIPLEX_AFTER), Some(true));
        assert_eq!(agent_version_after("3.0.196", MULTIPLEX_AFTER), Some(false));
        assert_eq!(
            agent_version_after("3.0.196.0.1", MULTIPLEX_AFTER),
            Some(true)
        );
        assert_eq!(agent_version_after("2", TERMINATE_FLAG_AFTER), Some(false));
        for bad in [
            "",
            "latest",
            "3..196.0",
            "3.0.x.0",
            "-1.0.0.0",
            "3.0.196.0 ",
        ] {
            assert_eq!(agent_version_after(bad, MULTIPLEX_AFTER), None, "{bad:?}");
        }
    }
}
