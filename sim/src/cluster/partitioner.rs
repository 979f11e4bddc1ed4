//! Kafka's Java-client partitioning of keyed records, bit for bit.
//!
//! A keyed record goes to `toPositive(murmur2(keyBytes)) % numPartitions` (Java
//! `BuiltInPartitioner.partitionForKey`, `Utils.murmur2`, `Utils.toPositive`; librdkafka's
//! `murmur2_random` partitioner agrees). Reproducing it exactly matters: which partition a key
//! lands on decides which records share an ordering and which consumer sees them, and a simulated
//! run must place records where a real cluster would.
//!
//! The simulator's keys are numeric ids that the application serialises as decimal strings (as
//! Kafka's `StringSerializer` does with `"123"`); [`key_bytes`] produces those bytes without
//! allocating.

/// murmur2's seed in Kafka's `Utils.murmur2`.
const SEED: u32 = 0x9747_b28c;
/// murmur2's multiplier.
const M: u32 = 0x5bd1_e995;
/// murmur2's shift.
const R: u32 = 24;

/// Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 variant the Java producer hashes keys with.
/// All arithmetic wraps at 32 bits; Java's `>>>` is the logical shift of `u32`.
pub fn murmur2(data: &[u8]) -> i32 {
    let len = data.len();
    // Java computes `seed ^ length` with an int length; only the low 32 bits matter.
    let mut h: u32 = SEED ^ (len as u32);

    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail of 1-3 bytes, falling through as Java's switch does. Java reads the bytes as
    // `data[i] & 0xff`, i.e. unsigned.
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which fails on `i32::MIN`).
#[inline]
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition the Java producer's default partitioner picks for a record with this key.
///
/// # Panics
/// If `num_partitions` is 0 (a topic always has at least one partition).
#[inline]
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> u32 {
    assert!(num_partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % num_partitions
}

/// Writes `key` as a decimal string (no sign, no leading zeros) into `buf` and returns the bytes
/// written: the key bytes a `StringSerializer` would produce for the id. 20 bytes hold
/// `u64::MAX`.
pub fn key_bytes(key: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = key;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// CRC-32 (IEEE), librdkafka's `consistent_random` partitioner hash for keyed records.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// The partition `partitioner` picks for a record whose key is the id `key` (sent as its decimal
/// string), out of `count`. Both drivers use it: the simulator to place records, the real driver
/// to check that librdkafka placed them there.
#[inline]
pub fn partition_of_key(partitioner: evsim_model::scenario::Partitioner, key: u64, count: u32) -> u32 {
    let mut buf = [0u8; 20];
    let bytes = key_bytes(key, &mut buf);
    match partitioner {
        evsim_model::scenario::Partitioner::Murmur2 => partition_for_key(bytes, count),
        evsim_model::scenario::Partitioner::Crc32 => crc32(bytes) % count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn murmur2_matches_kafka_reference_vectors() {
        // From Kafka's UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
    }

    #[test]
    fn murmur2_handles_every_tail_length() {
        // Lengths 0..=8 cover the empty key, full words and tails of 1, 2 and 3 bytes. Values
        // computed with an independent implementation of Kafka's Utils.murmur2.
        let hashes: Vec<i32> = (0..=8).map(|n| murmur2(&b"abcdefgh"[..n])).collect();
        assert_eq!(
            hashes,
            vec![
                275646681,
                -1563381124,
                316155434,
                479470107,
                -1323649548,
                461995741,
                1870650108,
                -346467175,
                -955427363,
            ]
        );
    }

    #[test]
    fn keys_map_to_kafka_partitions() {
        // From Kafka's BuiltInPartitionerTest / DefaultPartitionerTest, 3 partitions.
        assert_eq!(partition_for_key(b"key0", 3), 1);
        assert_eq!(partition_for_key(b"key1", 3), 2);
        assert_eq!(partition_for_key(b"key2", 3), 2);
        assert_eq!(partition_for_key(b"key3", 3), 1);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(-973932308), (-973932308i32 & 0x7fffffff) as u32);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn key_bytes_writes_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(key_bytes(0, &mut buf), b"0");
        assert_eq!(key_bytes(7, &mut buf), b"7");
        assert_eq!(key_bytes(21, &mut buf), b"21");
        assert_eq!(key_bytes(1000, &mut buf), b"1000");
        assert_eq!(key_bytes(u64::MAX, &mut buf), b"18446744073709551615");
        for k in [0u64, 9, 10, 99, 12345, 987654321012, u64::MAX - 1] {
            assert_eq!(key_bytes(k, &mut buf), k.to_string().as_bytes());
        }
        // A numeric key hashes like its decimal string.
        assert_eq!(murmur2(key_bytes(21, &mut buf)), -973932308);
    }
}
