//! The component model: compiling components and converting their values.
//!
//! - [`load`]: component bytes to a compiled `Component`, with clear errors for core
//!   modules and truncated bytes.
//! - [`values`]: Erlang terms to and from `wasmtime::component::Val`, guided by the WIT
//!   type, as Wasmex 0.15.1 maps them; [`path`] says where a wrong value is.

pub mod from_term;
pub mod load;
pub mod path;
pub mod values;

#[cfg(test)]
mod testing;

#[cfg(test)]
mod fixtures_tests;
#[cfg(test)]
mod imports_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod values_tests;
