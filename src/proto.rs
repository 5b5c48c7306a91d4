//! Generated gRPC bindings.
