//! The simulated NVMe controller: register-level, in-process, with a simulated IOMMU and fault injection.
