//! The stand-in data plane lives in `cstor-local` (its process stand-ins share it); the
//! in-process scenarios use the same store.
pub use cstor_local::standin::dataplane::*;
