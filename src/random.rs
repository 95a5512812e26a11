//! Unguessable numbers for protocol identifiers (SIP branch, tag and Call-ID, DNS query IDs):
//! the operating system's random source (getrandom), so that an off-path host cannot predict
//! them and forge answers.

/// 64 bits from the operating system's random source (time and pid only if it fails, which
/// on Linux it does not after boot).
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ() {
        let v: std::collections::HashSet<u64> = (0..64).map(|_| super::u64()).collect();
        assert_eq!(v.len(), 64);
    }
}
