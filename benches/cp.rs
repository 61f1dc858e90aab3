//! File copy benchmark (filled in with the cp transports).

fn main() {}
