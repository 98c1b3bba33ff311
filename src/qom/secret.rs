//! `-object secret`: a password or key given inline (`data=`), from a
//! file (`file=`), optionally base64 (`format=base64`) and optionally
//! AES-256-CBC encrypted with another secret as the key (`keyid=`,
//! `iv=`). Loaded on completion; other subsystems read the plain bytes
//! through [`Secret::raw`]. The plain bytes are never reported back.

use std::any::Any;

use serde_json::Value;

use super::aes::Aes256;
use super::props::{Input, QomError};
use super::types::{enum_values, PropDef};
use super::{ObjectImpl, Qom};

#[derive(Default)]
pub struct Secret {
    data: Option<String>,
    file: Option<String>,
    keyid: Option<String>,
    iv: Option<String>,
    base64: bool,
    raw: Option<Vec<u8>>,
}

/// QEMU's qbase64_decode: refuses NULs and characters outside the
/// alphabet (newlines allowed), then decodes leniently.
fn base64_decode(input: &[u8]) -> Result<Vec<u8>, QomError> {
    if input.contains(&0) {
        return Err(QomError::generic(
            "Base64 data contains embedded NUL characters",
        ));
    }
    let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'\n');
    if !input.iter().all(ok) {
        return Err(QomError::generic("Base64 data contains invalid characters"));
    }
    let s = std::str::from_utf8(input).unwrap_or("");
    Ok(crate::base64::decode(s))
}

impl Secret {
    /// The secret's plain bytes, once loaded.
    pub fn raw(&self) -> Option<&[u8]> {
        self.raw.as_deref()
    }

    fn load_input(&self) -> Result<Vec<u8>, QomError> {
        match (&self.file, &self.data) {
            (Some(_), Some(_)) => Err(QomError::generic(
                "'file' and 'data' are mutually exclusive",
            )),
            (Some(f), None) => std::fs::read(f).map_err(|e| {
                QomError::generic(format!(
                    "Unable to read {f}: Failed to open file “{f}”: {}",
                    super::hostmem::strerror(&e)
                ))
            }),
            (None, Some(d)) => Ok(d.as_bytes().to_vec()),
            (None, None) => Err(QomError::generic(
                "Either 'file' or 'data' must be provided",
            )),
        }
    }

    fn decrypt(&self, key: &[u8], input: Vec<u8>) -> Result<Vec<u8>, QomError> {
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| QomError::generic("Key should be 32 bytes in length"))?;
        let Some(iv) = &self.iv else {
            return Err(QomError::generic("IV is required to decrypt secret"));
        };
        let iv = base64_decode(iv.as_bytes())?;
        let iv: [u8; 16] = iv.as_slice().try_into().map_err(|_| {
            QomError::generic(format!("IV should be 16 bytes in length not {}", iv.len()))
        })?;
        let mut data = if self.base64 {
            base64_decode(&input)?
        } else {
            input
        };
        if data.len() % 16 != 0 {
            return Err(QomError::generic(format!(
                "Length {} must be a multiple of block size 16",
                data.len()
            )));
        }
        Aes256::new(key).decrypt_cbc(&iv, &mut data);
        let pad = data.last().copied().unwrap_or(0);
        if pad > 16 || usize::from(pad) > data.len() {
            return Err(QomError::generic(format!(
                "Incorrect number of padding bytes ({pad}) found on decrypted data"
            )));
        }
        data.truncate(data.len() - usize::from(pad));
        Ok(data)
    }

    /// Loads the secret; `key` is the raw data of the `keyid` secret.
    fn load(&mut self, key: Option<&[u8]>) -> Result<(), QomError> {
        let input = self.load_input()?;
        let raw = match key {
            Some(k) => self.decrypt(k, input)?,
            None if self.base64 => base64_decode(&input)?,
            None => input,
        };
        self.raw = Some(raw);
        Ok(())
    }

    /// QEMU's qcrypto_secret_lookup for the key secret.
    fn key_bytes(&self, qom: &Qom, own_id: &str) -> Result<Option<Vec<u8>>, QomError> {
        let Some(keyid) = &self.keyid else {
            return Ok(None);
        };
        if keyid == own_id {
            return Err(QomError::generic(format!(
                "Secret with id '{keyid}' has no data"
            )));
        }
        let Some(idx) = qom.object(keyid) else {
            return Err(QomError::generic(format!("No secret with id '{keyid}'")));
        };
        let Some(s) = qom.state::<Secret>(idx) else {
            return Err(QomError::generic(format!(
                "Object with id '{keyid}' is not a secret"
            )));
        };
        match s.raw() {
            Some(r) => Ok(Some(r.to_vec())),
            None => Err(QomError::generic(format!(
                "Secret with id '{keyid}' has no data"
            ))),
        }
    }
}

impl ObjectImpl for Secret {
    fn get(&self, p: &PropDef) -> Result<Value, QomError> {
        let s = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
        Ok(match p.name {
            "loaded" => Value::Bool(self.raw.is_some()),
            "format" => Value::String(if self.base64 { "base64" } else { "raw" }.into()),
            "data" => s(&self.data),
            "file" => s(&self.file),
            "keyid" => s(&self.keyid),
            "iv" => s(&self.iv),
            other => return Err(QomError::prop_not_found(other)),
        })
    }

    fn set(&mut self, _: &str, p: &PropDef, input: &Input) -> Result<(), QomError> {
        match p.name {
            "loaded" => {
                if input.bool(p.name)? {
                    // Reloading from qom-set cannot see other objects;
                    // an encrypted secret keeps its first load.
                    if self.keyid.is_none() {
                        self.load(None)?;
                    }
                } else {
                    self.raw = None;
                }
            }
            "format" => {
                let vals = enum_values("QCryptoSecretFormat").unwrap_or(&[]);
                self.base64 = input.enumeration(p.name, vals)? == "base64";
            }
            "data" => self.data = Some(input.string(p.name)?),
            "file" => self.file = Some(input.string(p.name)?),
            "keyid" => self.keyid = Some(input.string(p.name)?),
            "iv" => self.iv = Some(input.string(p.name)?),
            other => return Err(QomError::prop_not_found(other)),
        }
        Ok(())
    }

    fn complete(&mut self, path: &str, qom: &Qom) -> Result<(), QomError> {
        let id = path.rsplit('/').next().unwrap_or(path);
        let key = self.key_bytes(qom, id)?;
        self.load(key.as_deref())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qom::objects::{create, PropSource};
    use serde_json::json;

    fn add(q: &mut Qom, id: &str, props: Value) -> Result<usize, QomError> {
        let m = props.as_object().cloned().unwrap_or_default();
        create(q, "secret", id, PropSource::Json(&m))
    }

    fn raw(q: &Qom, id: &str) -> Vec<u8> {
        q.state::<Secret>(q.object(id).unwrap())
            .unwrap()
            .raw()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn inline_and_base64_data_load() {
        let mut q = Qom::new();
        add(&mut q, "s0", json!({"data": "hunter2"})).unwrap();
        assert_eq!(raw(&q, "s0"), b"hunter2");
        add(
            &mut q,
            "s1",
            json!({"data": "aHVudGVyMg==", "format": "base64"}),
        )
        .unwrap();
        assert_eq!(raw(&q, "s1"), b"hunter2");
        let idx = q.object("s1").unwrap();
        assert_eq!(q.get_prop(idx, "format").unwrap(), json!("base64"));
        assert_eq!(q.get_prop(idx, "loaded").unwrap(), json!(true));
    }

    #[test]
    fn file_data_loads_and_missing_file_reports_glib_wording() {
        let path = std::env::temp_dir().join(format!("rqemu-secret-{}", std::process::id()));
        std::fs::write(&path, b"from-file").unwrap();
        let mut q = Qom::new();
        add(&mut q, "f", json!({"file": path.to_str().unwrap()})).unwrap();
        assert_eq!(raw(&q, "f"), b"from-file");
        std::fs::remove_file(&path).unwrap();
        let e = add(&mut q, "g", json!({"file": "/nonexistent/s"})).unwrap_err();
        assert_eq!(
            e.msg(),
            "Unable to read /nonexistent/s: Failed to open file “/nonexistent/s”: No such file or directory"
        );
    }

    #[test]
    fn data_source_errors() {
        let mut q = Qom::new();
        assert_eq!(
            add(&mut q, "a", json!({})).unwrap_err().msg(),
            "Either 'file' or 'data' must be provided"
        );
        assert_eq!(
            add(&mut q, "a", json!({"data": "x", "file": "/y"}))
                .unwrap_err()
                .msg(),
            "'file' and 'data' are mutually exclusive"
        );
        assert_eq!(
            add(&mut q, "a", json!({"data": "!!", "format": "base64"}))
                .unwrap_err()
                .msg(),
            "Base64 data contains invalid characters"
        );
        assert!(q.object("a").is_none());
    }

    #[test]
    fn encrypted_secret_decrypts_with_the_key_secret() {
        let mut q = Qom::new();
        add(
            &mut q,
            "master",
            json!({"data": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", "format": "base64"}),
        )
        .unwrap();
        add(
            &mut q,
            "pw",
            json!({"data": "8M6ybS9236/Kv2RAf/0mMw==", "format": "base64",
                   "keyid": "master", "iv": "CQkJCQkJCQkJCQkJCQkJCQ=="}),
        )
        .unwrap();
        assert_eq!(raw(&q, "pw"), b"letmein");
    }

    #[test]
    fn encrypted_secret_errors() {
        let mut q = Qom::new();
        let e = add(&mut q, "pw", json!({"data": "x", "keyid": "nope"})).unwrap_err();
        assert_eq!(e.msg(), "No secret with id 'nope'");
        add(&mut q, "short", json!({"data": "abc"})).unwrap();
        let e = add(&mut q, "pw", json!({"data": "x", "keyid": "short"})).unwrap_err();
        assert_eq!(e.msg(), "Key should be 32 bytes in length");
        add(
            &mut q,
            "k",
            json!({"data": "0123456789abcdef0123456789abcdef"}),
        )
        .unwrap();
        let e = add(&mut q, "pw", json!({"data": "x", "keyid": "k"})).unwrap_err();
        assert_eq!(e.msg(), "IV is required to decrypt secret");
        let e = add(
            &mut q,
            "pw",
            json!({"data": "x", "keyid": "k", "iv": "AAAA"}),
        )
        .unwrap_err();
        assert_eq!(e.msg(), "IV should be 16 bytes in length not 3");
    }
}
