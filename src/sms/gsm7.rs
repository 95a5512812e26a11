//! GSM 03.38 (TS 23.038 6.2.1) default alphabet with its extension table, and septet packing.
//!
//! Pure and total: every function accepts any input. Encoding returns `None` for text that has
//! a character outside the default alphabet and the extension table (the caller then uses
//! UCS-2). Decoding maps every septet to a character: an extension code this table does not
//! know shows its default-alphabet character (TS 23.038 6.2.1.1), and an escape at the very end
//! is dropped.
//!
//! Standards: 3GPP TS 23.038 6.1.2.1 (packing), 6.2.1 (default alphabet), 6.2.1.1 (extension).

/// The escape septet that selects the extension table.
pub const ESC: u8 = 0x1B;

/// The default alphabet: septet value -> character. 0x1B (escape) maps to a space placeholder
/// and is handled separately.
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (septet after the escape, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septet values for ASCII code points that are in the default alphabet (0xFF: not there).
const ASCII: [u8; 128] = {
    let mut t = [0xFFu8; 128];
    let mut i = 0;
    while i < 128 {
        let c = DEFAULT[i] as u32;
        if i != ESC as usize && c < 128 && t[c as usize] == 0xFF {
            t[c as usize] = i as u8;
        }
        i += 1;
    }
    t
};

/// The septets for one character: one for the default alphabet, two (escape + code) for the
/// extension table, `None` when the character has no GSM 7-bit form.
pub fn char_septets(c: char) -> Option<([u8; 2], usize)> {
    if let Some(&s) = ASCII.get(c as usize)
        && s != 0xFF
    {
        return Some(([s, 0], 1));
    }
    if let Some((code, _)) = EXTENSION.iter().find(|(_, e)| *e == c) {
        return Some(([ESC, *code], 2));
    }
    if (c as u32) < 128 {
        return None;
    }
    // Non-ASCII letters of the default alphabet; slot 0x1B is the escape, never a character.
    DEFAULT
        .iter()
        .enumerate()
        .find(|(i, d)| **d == c && *i != usize::from(ESC))
        .map(|(i, _)| ([i as u8, 0], 1))
}

/// How many septets `c` takes, or `None` when it has no GSM 7-bit form.
pub fn char_cost(c: char) -> Option<usize> {
    char_septets(c).map(|(_, n)| n)
}

/// Whether every character of `text` has a GSM 7-bit form.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| char_cost(c).is_some())
}

/// Encodes text as septet values (one per byte, 0..=127), or `None` when a character has no
/// GSM 7-bit form.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (s, n) = char_septets(c)?;
        out.extend_from_slice(&s[..n]);
    }
    Some(out)
}

/// Decodes septet values (the low 7 bits of each byte are used) to text.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let s = septets[i] & 0x7F;
        if s == ESC {
            match septets.get(i + 1).map(|n| n & 0x7F) {
                Some(code) => {
                    match EXTENSION.iter().find(|(c, _)| *c == code) {
                        Some((_, ch)) => out.push(*ch),
                        // 0x1B 0x1B is reserved for a further table: show a space. Any other
                        // unknown code shows its default-alphabet character.
                        None if code == ESC => out.push(' '),
                        None => out.push(DEFAULT[usize::from(code)]),
                    }
                    i += 2;
                }
                None => i += 1,
            }
        } else {
            out.push(DEFAULT[usize::from(s)]);
            i += 1;
        }
    }
    out
}

/// Packs septets LSB first into octets, starting `fill_bits` bits into the first octet
/// (the fill bits after a user-data header are zero). Returns the octets.
pub fn pack(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let total_bits = fill_bits + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, s) in septets.iter().enumerate() {
        let bit = fill_bits + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= (v & 0xFF) as u8;
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` septets from `octets`, starting `fill_bits` bits into the first octet.
/// Septets past the end of the data are not produced.
pub fn unpack(octets: &[u8], fill_bits: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill_bits + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let Some(lo) = octets.get(byte) else { break };
        let hi = if shift > 1 {
            match octets.get(byte + 1) {
                Some(h) => *h,
                None => break,
            }
        } else {
            0
        };
        let v = (u16::from(*lo) | (u16::from(hi) << 8)) >> shift;
        out.push((v & 0x7F) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_alphabet_positions() {
        assert_eq!(encode("@£$¥_").unwrap(), vec![0x00, 0x01, 0x02, 0x03, 0x11]);
        assert_eq!(encode("¡§¿à").unwrap(), vec![0x40, 0x5F, 0x60, 0x7F]);
        assert_eq!(encode(" ").unwrap(), vec![0x20]);
        assert_eq!(encode("\r\n").unwrap(), vec![0x0D, 0x0A]);
    }

    #[test]
    fn extension_table_uses_the_escape() {
        assert_eq!(
            encode("^{}\\[~]|€\u{0C}").unwrap(),
            vec![
                0x1B, 0x14, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x2F, 0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E,
                0x1B, 0x40, 0x1B, 0x65, 0x1B, 0x0A
            ]
        );
        assert_eq!(decode(&[0x1B, 0x65, 0x41]), "€A");
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        assert_eq!(encode("日本"), None);
        assert_eq!(encode("`"), None);
        assert!(!is_gsm7("emoji 🙂"));
        assert!(is_gsm7("Hölä BÄRÇA äñ@"));
    }

    #[test]
    fn unknown_extension_and_dangling_escape_decode_safely() {
        assert_eq!(decode(&[0x1B, 0x41]), "A");
        assert_eq!(decode(&[0x41, 0x1B]), "A");
        assert_eq!(decode(&[0x1B, 0x1B]), " ");
    }

    #[test]
    fn packing_matches_ts_23_038_example() {
        // "hellohello" packs to E8 32 9B FD 46 97 D9 EC 37 (the classic example).
        let s = encode("hellohello").unwrap();
        assert_eq!(
            pack(&s, 0),
            vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(decode(&unpack(&pack(&s, 0), 0, s.len())), "hellohello");
    }

    #[test]
    fn fill_bits_shift_the_text() {
        let s = encode("Hi").unwrap();
        let p = pack(&s, 1);
        assert_eq!(unpack(&p, 1, 2), s);
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(septets in proptest::collection::vec(0u8..128, 0..200), fill in 0usize..7) {
            let p = pack(&septets, fill);
            prop_assert_eq!(p.len(), (fill + septets.len() * 7).div_ceil(8));
            prop_assert_eq!(unpack(&p, fill, septets.len()), septets);
        }

        #[test]
        fn encode_decode_round_trip_for_gsm_text(idx in proptest::collection::vec(0usize..138, 0..100)) {
            let chars: Vec<char> = DEFAULT.iter().enumerate().filter(|(i, _)| *i != 0x1B).map(|(_, c)| *c)
                .chain(EXTENSION.iter().map(|(_, c)| *c)).collect();
            let text: String = idx.iter().map(|i| chars[i % chars.len()]).collect();
            let s = encode(&text).unwrap();
            prop_assert_eq!(decode(&s), text);
        }

        #[test]
        fn decode_and_unpack_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), fill in 0usize..8, count in 0usize..300) {
            let _ = decode(&bytes);
            let _ = unpack(&bytes, fill, count);
        }
    }
}
