//! GUIDs in the byte order firmware and the GHCB certificate table use
//! (the first three fields little-endian, the rest as written).

/// Converts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` at compile time: used
/// only in constants, so a malformed literal is a build error, never a
/// runtime panic.
pub const fn guid(s: &str) -> [u8; 16] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit in a GUID literal"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 36, "a GUID literal is 36 characters");
    let mut raw = [0u8; 16];
    let mut i = 0;
    let mut n = 0;
    while i < 36 {
        if b[i] == b'-' {
            i += 1;
            continue;
        }
        raw[n] = nibble(b[i]) << 4 | nibble(b[i + 1]);
        n += 1;
        i += 2;
    }
    assert!(n == 16, "a GUID literal has 32 hex digits");
    [
        raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6], raw[8], raw[9], raw[10],
        raw[11], raw[12], raw[13], raw[14], raw[15],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_case_is_the_same_guid() {
        assert_eq!(
            guid("0A1B2C3D-4E5F-6A7B-8C9D-AEBFCADBECFD"),
            guid("0a1b2c3d-4e5f-6a7b-8c9d-aebfcadbecfd")
        );
        assert_eq!(guid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), [0xff; 16]);
    }

    #[test]
    fn mixed_endian_layout() {
        const G: [u8; 16] = guid("00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(
            G,
            [
                0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
    }
}
