//! The userspace NVMe driver: controller bring-up, admin and I/O queue pairs, namespaces.
