//! Typed wrapper over open-iscsi's iscsiadm behind the shared command runner
