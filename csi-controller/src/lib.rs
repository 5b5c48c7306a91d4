//! CSI Controller and Identity services of cstor.csi.openebs.io
