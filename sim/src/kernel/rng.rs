//! The simulator's pinned pseudo-random generator and its named streams.
//!
//! Every random choice of a run (arrival times, network delays, client behaviour, fault
//! injection) comes from here, so that a master seed reproduces a run exactly. The algorithms are
//! written out in this file rather than taken from the `rand` crates, whose output for a given
//! seed may change between versions: a seed printed by a failing run today must replay the same
//! run with every later release. Their reference vectors are pinned in the tests below.
//!
//! - Generator: xoshiro256** 1.0 (David Blackman and Sebastiano Vigna, 2018).
//! - Seed expansion: SplitMix64 (Vigna's reference `splitmix64.c`).
//! - Stream derivation: SplitMix64's output mix applied to `master ^ fnv1a64(stream name)`.

use evsim_model::stable_hash::fnv1a;

/// SplitMix64's increment, the golden-ratio constant `0x9e3779b97f4a7c15`.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (a bijective 64-bit mix), without the state increment.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One step of SplitMix64: advances `state` and returns the next output.
#[inline]
fn splitmix64_next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    mix64(*state)
}

/// A xoshiro256** generator: fast, 256 bits of state, period 2^256 - 1, and a fixed output
/// sequence for a given seed forever. Not cryptographic; it drives simulations only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// A generator whose 256-bit state is the first four outputs of SplitMix64 seeded with
    /// `seed` (the expansion the xoshiro authors recommend). The state is never all zero.
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let s =
            [splitmix64_next(&mut sm), splitmix64_next(&mut sm), splitmix64_next(&mut sm), splitmix64_next(&mut sm)];
        // mix64 is a bijection and the four inputs differ, so at most one word can be zero.
        Self { s }
    }

    /// A generator with exactly this state, for reference-vector tests.
    #[cfg(test)]
    fn from_state(s: [u64; 4]) -> Self {
        assert!(s != [0; 4], "xoshiro256** state must not be all zero");
        Self { s }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-shift with
    /// rejection; draws one value, rarely more). `n == 0` is a caller bug: it panics in debug
    /// builds and returns 0 in release builds.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n != 0, "SimRng::below(0)");
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            // 2^64 mod n: the number of low values to reject so every result is equally likely.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// A uniform integer in `lo..=hi`. Requires `lo <= hi` (debug-asserted; in release builds
    /// a reversed range returns `lo`).
    #[inline]
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi, "SimRng::range_inclusive({lo}, {hi})");
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(), // the full u64 range
        }
    }

    /// A uniform float in `[0, 1)` with 53 random bits (every value is a multiple of 2^-53).
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (`p <= 0` is never, `p >= 1` is always). Always consumes
    /// exactly one draw, so a probability of 0 or 1 does not shift the stream.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit_f64() < p
    }

    /// An exponentially distributed float with the given mean: `mean * -ln(1 - u)` for a
    /// uniform `u` in `[0, 1)`. The gaps between events of a Poisson process with rate
    /// `1 / mean` follow it, so workloads use it for inter-arrival times. Uses the platform's
    /// `ln`; callers that schedule events should round the result to whole microseconds.
    #[inline]
    pub fn exponential(&mut self, mean: f64) -> f64 {
        let u = self.unit_f64();
        // libm's pure-Rust log, not the platform's: the same bits on every OS and libc.
        mean * -libm::log(1.0 - u)
    }

    /// `base` plus a uniform extra in `0..=spread` (saturating), e.g. a network delay around a
    /// minimum latency.
    #[inline]
    pub fn jitter(&mut self, base: u64, spread: u64) -> u64 {
        base.saturating_add(self.range_inclusive(0, spread))
    }
}

/// A named source of randomness. Each concern of the simulation draws from its own stream so that
/// a change in how often one concern draws (say, an extra fault decision) does not shift the
/// values another concern sees.
///
/// The list is append-only: a stream's seed is derived from its [`name`](Stream::name), so
/// adding a stream does not change existing streams' sequences, but renaming or removing one
/// changes (or breaks) every recorded seed that used it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// The client workload: arrivals, users, products, quantities.
    Workload,
    /// Network latency, jitter, loss and reordering.
    Network,
    /// Client library behaviour: partition choice for null keys, retries, backoff jitter.
    Client,
    /// Fault injection: crashes, pauses, partitions of the network.
    Faults,
    /// Business conditions that are not per request: which users start without funds.
    Business,
    /// A workflow's external systems: which calls fail with an error (their error rates).
    External,
}

impl Stream {
    /// Every stream, in declaration order.
    pub const ALL: [Stream; 6] =
        [Stream::Workload, Stream::Network, Stream::Client, Stream::Faults, Stream::Business, Stream::External];

    /// The stream's stable name; it is hashed into the stream's seed, so it must never change.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Workload => "workload",
            Stream::Network => "network",
            Stream::Client => "client",
            Stream::Faults => "faults",
            Stream::Business => "business",
            Stream::External => "external",
        }
    }
}

/// The master seed of a run, and the one place named streams are derived from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Seeds {
    master: u64,
}

impl Seeds {
    /// Seeds for a run with this master seed.
    pub fn new(master: u64) -> Self {
        Self { master }
    }

    /// The master seed, as printed for a person to replay the run.
    pub fn master(&self) -> u64 {
        self.master
    }

    /// A fresh generator for stream `s`: seeded with `mix64(master ^ fnv1a64(name))`, where
    /// `mix64` is SplitMix64's output mix. Calling it twice gives two identical generators.
    pub fn stream(&self, s: Stream) -> SimRng {
        SimRng::from_seed(mix64(self.master ^ fnv1a(s.name().as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(rng: &mut SimRng, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn xoshiro256starstar_reference_vector() {
        // From state [1, 2, 3, 4]. The first three were worked by hand from the reference
        // algorithm (11520 = rotl(2 * 5, 7) * 9; the second output reads s[1] = 2 ^ 2 = 0;
        // the third is rotl(262149 * 5, 7) * 9); all ten agree with an independent
        // implementation of xoshiro256starstar.c and with the rand_xoshiro test vector.
        let mut rng = SimRng::from_state([1, 2, 3, 4]);
        assert_eq!(
            take(&mut rng, 10),
            vec![
                11520,
                0,
                1509978240,
                1215971899390074240,
                1216172134540287360,
                607988272756665600,
                16172922978634559625,
                8476171486693032832,
                10595114339597558777,
                2904607092377533576,
            ]
        );
    }

    #[test]
    fn splitmix64_reference_vector() {
        let mut state = 1234567;
        let out: Vec<u64> = (0..5).map(|_| splitmix64_next(&mut state)).collect();
        assert_eq!(
            out,
            vec![
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821,
            ]
        );
    }

    #[test]
    fn from_seed_expands_with_splitmix64() {
        let rng = SimRng::from_seed(1234567);
        assert_eq!(rng.s, [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431]);
        let mut rng = SimRng::from_seed(0);
        assert_ne!(rng.s, [0; 4]);
        assert_ne!(rng.next_u64(), rng.next_u64());
    }

    /// GOLDEN VALUES. These pin the first outputs of every named stream for master seed 42.
    /// Changing them (the algorithms, the stream names, the derivation) breaks every seed ever
    /// recorded: a failing seed would no longer replay its run. Do not update them to make a
    /// change pass; computed once and cross-checked against an independent implementation.
    #[test]
    fn named_streams_are_pinned_for_seed_42() {
        let seeds = Seeds::new(42);
        let golden: [(Stream, [u64; 3]); 5] = [
            (Stream::Workload, [3301846138380641920, 15657058367285601685, 9019296626760255238]),
            (Stream::Network, [11962458805708422505, 4844137993810106075, 11993065655207859284]),
            (Stream::Client, [15727161954020067740, 6816139620738267213, 14876163027348889864]),
            (Stream::Faults, [17259697867928942688, 5349217341124112736, 13892361021535333508]),
            (Stream::Business, [13534983754096946345, 16547751538911169430, 14445719903384113616]),
        ];
        for (stream, want) in golden {
            let mut rng = seeds.stream(stream);
            assert_eq!(take(&mut rng, 3), want.to_vec(), "stream {}", stream.name());
        }
    }

    #[test]
    fn streams_and_seeds_differ_and_repeat() {
        let a = Seeds::new(42);
        let b = Seeds::new(43);
        assert_eq!(a.master(), 42);
        let mut firsts = Vec::new();
        for s in Stream::ALL {
            assert_eq!(take(&mut a.stream(s), 8), take(&mut a.stream(s), 8), "repeatable");
            assert_ne!(take(&mut a.stream(s), 8), take(&mut b.stream(s), 8), "seed matters");
            firsts.push(take(&mut a.stream(s), 8));
        }
        for i in 0..firsts.len() {
            for j in i + 1..firsts.len() {
                assert_ne!(firsts[i], firsts[j], "streams {i} and {j} must differ");
            }
        }
        let names: Vec<_> = Stream::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["workload", "network", "client", "faults", "business", "external"], "append-only");
    }

    #[test]
    fn below_stays_in_range_and_is_roughly_uniform() {
        let mut rng = Seeds::new(7).stream(Stream::Workload);
        let mut counts = [0u32; 6];
        for _ in 0..6000 {
            let v = rng.below(6);
            assert!(v < 6);
            counts[v as usize] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "bucket count {c} of 1000 expected: {counts:?}");
        }
        for n in [1, 2, 3, 1000, u64::MAX / 3 + 7, u64::MAX] {
            for _ in 0..200 {
                assert!(rng.below(n) < n);
            }
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn ranges_floats_and_helpers() {
        let mut rng = SimRng::from_seed(99);
        for _ in 0..1000 {
            let v = rng.range_inclusive(10, 12);
            assert!((10..=12).contains(&v));
            let j = rng.jitter(100, 5);
            assert!((100..=105).contains(&j));
            let u = rng.unit_f64();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.exponential(3.0) >= 0.0);
        }
        assert_eq!(rng.range_inclusive(5, 5), 5);
        let _ = rng.range_inclusive(0, u64::MAX);
        assert_eq!(rng.jitter(u64::MAX, 10), u64::MAX);
        assert_eq!(rng.jitter(7, 0), 7);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
        // chance(p) hits about p of the time, and exponential's mean is about `mean`.
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2300..=2700).contains(&hits), "{hits}");
        let mean = (0..20_000).map(|_| rng.exponential(50.0)).sum::<f64>() / 20_000.0;
        assert!((47.0..=53.0).contains(&mean), "{mean}");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "below(0)")]
    fn below_zero_panics_in_debug() {
        SimRng::from_seed(1).below(0);
    }
}
