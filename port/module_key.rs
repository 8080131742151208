//! A module's identity: the SHA-256 of its source kind and bytes.
//!
//! The BEAM names each module by this digest (`Wasmex.Module`), so that a host that already
//! has a module is not sent its bytes again. A name that anyone could make two sources share
//! would let one tenant's upload replace what another runs, so the name is a
//! collision-resistant hash, and the port checks it against the bytes whenever bytes come
//! with it: a module enters a host's registry or the artifact cache only under the digest of
//! its own bytes.

use crate::term::Fallible;
use sha2::{Digest, Sha256};

/// The SHA-256 digest naming a module source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleKey([u8; 32]);

impl ModuleKey {
    /// The key of `bytes` of the given source kind (`"wasm"` or `"precompiled"`): the digest
    /// of the kind's name followed by the bytes, as `Wasmex.Module` computes it.
    pub fn of(kind: &str, bytes: &[u8]) -> ModuleKey {
        let mut hasher = Sha256::new();
        hasher.update(kind.as_bytes());
        hasher.update(bytes);
        ModuleKey(hasher.finalize().into())
    }

    /// The key of `bytes`, provided it is the one the request `claimed` for them.
    pub fn verified(claimed: &[u8], kind: &str, bytes: &[u8]) -> Fallible<ModuleKey> {
        let key = ModuleKey::of(kind, bytes);
        if claimed == key.0 {
            Ok(key)
        } else {
            Err("the module key is not the SHA-256 digest of the module's source".into())
        }
    }

    /// The key a request names without the module's bytes. It proves nothing by itself:
    /// it may only look up what was stored under it after a check against the bytes (the
    /// host's registry, an artifact whose trailer names it).
    pub fn named(claimed: &[u8]) -> Fallible<ModuleKey> {
        let bytes: [u8; 32] = claimed
            .try_into()
            .map_err(|_| format!("a module key is 32 bytes, got {}", claimed.len()))?;
        Ok(ModuleKey(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// Lower-case hexadecimal digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_sha256_of_the_kind_and_the_bytes() {
        // sha256("wasm" ++ "(module)")
        let expected = hex(&Sha256::digest(b"wasm(module)"));
        assert_eq!(ModuleKey::of("wasm", b"(module)").hex(), expected);
    }

    #[test]
    fn the_kind_is_part_of_the_key() {
        assert_ne!(
            ModuleKey::of("wasm", b"x"),
            ModuleKey::of("precompiled", b"x")
        );
    }

    #[test]
    fn a_claimed_key_that_matches_the_bytes_is_accepted() {
        let key = ModuleKey::of("wasm", b"(module)");
        assert_eq!(
            ModuleKey::verified(key.as_bytes(), "wasm", b"(module)"),
            Ok(key)
        );
    }

    #[test]
    fn a_named_key_must_be_32_bytes() {
        let key = ModuleKey::of("wasm", b"(module)");
        assert_eq!(ModuleKey::named(key.as_bytes()), Ok(key));
        assert_eq!(
            ModuleKey::named(b"short"),
            Err("a module key is 32 bytes, got 5".to_string())
        );
    }

    #[test]
    fn a_claimed_key_of_other_bytes_is_refused() {
        let other = ModuleKey::of("wasm", b"(module $other)");
        let refused = ModuleKey::verified(other.as_bytes(), "wasm", b"(module)");
        assert!(refused.unwrap_err().contains("not the SHA-256 digest"));
    }

    #[test]
    fn an_md5_sized_key_is_refused() {
        assert!(ModuleKey::verified(&[0u8; 16], "wasm", b"(module)").is_err());
    }
}
