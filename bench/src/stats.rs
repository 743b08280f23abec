//! Measuring helpers: a log-linear latency histogram and /proc readers.

/// Latencies in microseconds, in buckets of about 1 % width (fine enough for p999).
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u64 = 64;

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; 64 * SUB as usize],
            total: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as u64; // v >= 2^exp
        let shift = exp - 6; // SUB = 2^6 sub-buckets per power of two
        let mantissa = (v >> shift) - SUB;
        ((exp - 5) * SUB + mantissa) as usize
    }

    fn lower_bound(b: usize) -> u64 {
        let b = b as u64;
        if b < SUB {
            return b;
        }
        let exp = b / SUB + 5;
        let mantissa = b % SUB;
        (SUB + mantissa) << (exp - 6)
    }

    pub(crate) fn record(&mut self, v: u64) {
        let b = Self::bucket(v).min(self.counts.len() - 1);
        self.counts[b] += 1;
        self.total += 1;
    }

    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Self::lower_bound(b);
            }
        }
        Self::lower_bound(self.counts.len() - 1)
    }
}

/// Resident set size of a process in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU seconds of a process (`None`: this one).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
