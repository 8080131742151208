//! The component model: compiling components and converting their values.
//!
//! - [`load`]: component bytes to a compiled `Component`, with clear errors for core
//!   modules and truncated bytes.
//! - [`values`]: Erlang terms to and from `wasmtime::component::Val`, guided by the WIT
//!   type, as Wasmex 0.15.1 maps them; [`path`] says where a wrong value is.
//! - [`registry`]: compiled components by key; [`names`]: the WIT names the BEAM makes
//!   atoms of before any value carries them.
//! - [`state`]: what a store keeps for components (instances, WASI preview 2);
//!   [`serve`]: the requests a store serves for them; [`imports`]: host imports in Elixir;
//!   [`wasi`]: WASI preview 2 options; [`wit`]: what a WIT world exports; [`timing`]:
//!   where an instance's calls spend their time.
//! - [`resources`]: resource handles in values, guest resources and their table;
//!   [`host_resources`]: resources the host implements in Elixir.

pub mod from_term;
pub mod host_resources;
pub mod imports;
pub mod load;
pub mod names;
pub mod path;
pub mod random;
pub mod registry;
pub mod resources;
pub mod serve;
pub mod state;
pub mod timing;
pub mod values;
pub mod wasi;
pub mod wit;
pub mod wit_resources;

pub use state::ComponentState;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod fixtures_tests;
#[cfg(test)]
mod imports_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod resources_tests;
#[cfg(test)]
mod values_tests;
