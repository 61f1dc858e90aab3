//! Local emulator of AWS CloudShell.

pub mod gateway;
pub mod kms;
