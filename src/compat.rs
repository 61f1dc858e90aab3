//! placeholder, replaced below
/// Placeholder.
pub struct CloudShellClient;
