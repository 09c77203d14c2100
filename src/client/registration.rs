//! Registering and removing runners (protocol §1): the legacy pool/agent flow and the
//! runner-admin ("v2") flow.
