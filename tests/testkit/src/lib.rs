//! Test support: an in-process Kubernetes API server and the cluster-backed test switch
