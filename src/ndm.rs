//! NDM kinds (openebs.io/v1alpha1): BlockDevice, BlockDeviceClaim.
