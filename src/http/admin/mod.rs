//! The admin APIs over the one admin service ([`crate::admin`]): the Tencent-compatible REST API ([`v4`]) and
//! the native one ([`native`]), with its OpenAPI document.

pub mod native;
pub mod v4;
