//! The QEMU backend of [`crate::vm::Hypervisor`].
