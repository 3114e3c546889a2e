//! The VFIO backend: real NVMe functions through the type1 IOMMU.
