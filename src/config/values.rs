//! The value types of the configuration file and their checks: durations with units
//! (`"90s"`), sizes with units (`"64KiB"`), networks (`10.0.0.0/8`), host:port, domain
//! names, and the bound checks every section uses. Pure.

use super::*;

pub(super) fn loopback() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            prefix: 128,
        },
    ]
}

/// One key's bound: the key, its value, the least and the most it may be.
pub(super) enum Bound {
    /// A count or a size.
    Num(&'static str, u64, u64, u64),
    /// A duration.
    Time(&'static str, Duration, Duration, Duration),
}

impl Bound {
    /// A duration bound given in seconds.
    pub(super) const fn secs(key: &'static str, v: Duration, min: u64, max: u64) -> Bound {
        Bound::Time(key, v, Duration::from_secs(min), Duration::from_secs(max))
    }
}

/// Checks each bound in turn; the first one out of range gives its key and the reason.
pub(super) fn check_bounds(bounds: &[Bound]) -> Result<(), (&'static str, String)> {
    for b in bounds {
        match *b {
            Bound::Num(key, v, min, max) => bound_num(key, v, min, max)?,
            Bound::Time(key, v, min, max) => bound(key, v, min, max)?,
        }
    }
    Ok(())
}

fn bound(
    key: &'static str,
    v: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), (&'static str, String)> {
    if v < min || v > max {
        return Err((
            key,
            format!("{} is out of bounds ({} to {})", Dur(v), Dur(min), Dur(max)),
        ));
    }
    Ok(())
}

fn bound_num(key: &'static str, v: u64, min: u64, max: u64) -> Result<(), (&'static str, String)> {
    if v < min || v > max {
        return Err((key, format!("{v} is out of bounds ({min} to {max})")));
    }
    Ok(())
}

/// Splits `host:port` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

pub(super) fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A duration written with a unit: `ms`, `s`, `m`, `h`, `d` (e.g. `"90s"`, `"5m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?} has no unit (use ms, s, m, h or d)"))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} does not start with a whole number"))?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" | "min" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
        }
        .ok_or_else(|| format!("{s:?} is too large"))?;
        Ok(Dur(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (n, u) in units {
            if ms >= n && ms.is_multiple_of(n) {
                return write!(f, "{}{u}", ms / n);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written with a unit: `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} does not start with a whole number"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{u}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An address block, `192.0.2.0/24` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this block. IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether any block in `nets` holds `ip`.
pub fn trusted(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
