//! CSI Node and Identity services of cstor.csi.openebs.io
