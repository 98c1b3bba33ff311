//! AES-256-CBC decryption (FIPS-197), for `secret` objects whose data is
//! encrypted with another secret's key (`keyid=`, `iv=`). Only decryption
//! is needed: QEMU never encrypts secrets itself. Table-free S-box
//! lookups are fine here: the key is the user's own master key and the
//! work is a few blocks per object-add.

const SBOX: [u8; 256] = {
    let mut s = [0u8; 256];
    // Build the S-box from its definition: multiplicative inverse in
    // GF(2^8) followed by the affine map.
    let mut p: u8 = 1;
    let mut q: u8 = 1;
    loop {
        // p walks the multiplicative group by 3, q by its inverse (3^-1).
        p = p ^ (p << 1) ^ if p & 0x80 != 0 { 0x1b } else { 0 };
        q ^= q << 1;
        q ^= q << 2;
        q ^= q << 4;
        if q & 0x80 != 0 {
            q ^= 0x09;
        }
        let x = q ^ q.rotate_left(1) ^ q.rotate_left(2) ^ q.rotate_left(3) ^ q.rotate_left(4);
        s[p as usize] = x ^ 0x63;
        if p == 1 {
            break;
        }
    }
    s[0] = 0x63;
    s
};

const INV_SBOX: [u8; 256] = {
    let mut inv = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        inv[SBOX[i] as usize] = i as u8;
        i += 1;
    }
    inv
};

fn xtime(b: u8) -> u8 {
    (b << 1) ^ if b & 0x80 != 0 { 0x1b } else { 0 }
}

fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        a = xtime(a);
        b >>= 1;
    }
    r
}

const ROUNDS: usize = 14;

/// The expanded AES-256 key: 15 round keys.
pub struct Aes256 {
    round_keys: [[u8; 16]; ROUNDS + 1],
}

impl Aes256 {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut w = [[0u8; 4]; 4 * (ROUNDS + 1)];
        for (i, word) in w.iter_mut().take(8).enumerate() {
            word.copy_from_slice(&key[4 * i..4 * i + 4]);
        }
        let mut rcon: u8 = 1;
        for i in 8..w.len() {
            let mut t = w[i - 1];
            if i % 8 == 0 {
                t = [
                    SBOX[t[1] as usize],
                    SBOX[t[2] as usize],
                    SBOX[t[3] as usize],
                    SBOX[t[0] as usize],
                ];
                t[0] ^= rcon;
                rcon = xtime(rcon);
            } else if i % 8 == 4 {
                t = t.map(|b| SBOX[b as usize]);
            }
            for j in 0..4 {
                w[i][j] = w[i - 8][j] ^ t[j];
            }
        }
        let mut round_keys = [[0u8; 16]; ROUNDS + 1];
        for (r, rk) in round_keys.iter_mut().enumerate() {
            for c in 0..4 {
                rk[4 * c..4 * c + 4].copy_from_slice(&w[4 * r + c]);
            }
        }
        Aes256 { round_keys }
    }

    /// Decrypts one 16-byte block in place (the inverse cipher).
    pub fn decrypt_block(&self, b: &mut [u8; 16]) {
        xor(b, &self.round_keys[ROUNDS]);
        for round in (0..ROUNDS).rev() {
            // InvShiftRows: row r rotates right by r (state is column major).
            let s = *b;
            for c in 0..4 {
                for r in 0..4 {
                    b[4 * ((c + r) % 4) + r] = s[4 * c + r];
                }
            }
            for x in b.iter_mut() {
                *x = INV_SBOX[*x as usize];
            }
            xor(b, &self.round_keys[round]);
            if round > 0 {
                for c in 0..4 {
                    let col = [b[4 * c], b[4 * c + 1], b[4 * c + 2], b[4 * c + 3]];
                    for r in 0..4 {
                        b[4 * c + r] = mul(col[r], 14)
                            ^ mul(col[(r + 1) % 4], 11)
                            ^ mul(col[(r + 2) % 4], 13)
                            ^ mul(col[(r + 3) % 4], 9);
                    }
                }
            }
        }
    }

    /// CBC decryption; `data.len()` must be a multiple of 16.
    pub fn decrypt_cbc(&self, iv: &[u8; 16], data: &mut [u8]) {
        let mut prev = *iv;
        for chunk in data.chunks_exact_mut(16) {
            let mut block = [0u8; 16];
            block.copy_from_slice(chunk);
            let cipher = block;
            self.decrypt_block(&mut block);
            xor(&mut block, &prev);
            chunk.copy_from_slice(&block);
            prev = cipher;
        }
    }
}

fn xor(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sbox_matches_fips_197() {
        assert_eq!(SBOX[0x00], 0x63);
        assert_eq!(SBOX[0x53], 0xed);
        assert_eq!(SBOX[0xff], 0x16);
        assert_eq!(INV_SBOX[0x63], 0x00);
    }

    #[test]
    fn decrypts_the_fips_197_aes256_example() {
        let key: [u8; 32] = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .try_into()
            .unwrap();
        let mut block: [u8; 16] = hex("8ea2b7ca516745bfeafc49904b496089").try_into().unwrap();
        Aes256::new(&key).decrypt_block(&mut block);
        assert_eq!(block.to_vec(), hex("00112233445566778899aabbccddeeff"));
    }

    #[test]
    fn cbc_matches_openssl_when_available() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let khex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let ivhex: String = iv.iter().map(|b| format!("{b:02x}")).collect();
        let plain = b"a secret that spans more than one block";
        let out = std::process::Command::new("openssl")
            .args(["enc", "-aes-256-cbc", "-K", &khex, "-iv", &ivhex])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(plain)?;
                c.wait_with_output()
            });
        let Ok(out) = out else {
            eprintln!("openssl not available; oracle test skipped");
            return;
        };
        let mut data = out.stdout;
        assert_eq!(data.len(), 48);
        Aes256::new(&key).decrypt_cbc(&iv, &mut data);
        let pad = data[47] as usize;
        assert_eq!(&data[..48 - pad], plain);
    }
}
