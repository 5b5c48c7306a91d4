//! cstor.openebs.io/v1 kinds.
