//! Placeholder created by the lead so the workspace manifest parses; the SIP2 engineer replaces it.
fn main() {}
