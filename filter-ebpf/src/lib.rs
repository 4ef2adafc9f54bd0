#![no_std]
// This file exists to enable the library target, so that `filter-user` can
// name this crate as a build dependency (aya-build builds the binary).
